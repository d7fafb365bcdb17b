"""Every facial action in a single photo's psi: the figures of issue 22, on held-out people.

    python bench/expressions.py [--shared ../shared] [--cache /tmp/dfe_expressions.npz] [--people 40]

Data (landmarked once, cached outside the repository): the shared real media (Canada and London
neutrals, London smiles, the 8 pose photos, the face tracks of the shared videos) and, on each of
the 80 neutral faces, ``dfe synth`` photos made in memory (warp, JPEG at dfe synth's quality, then
MediaPipe again): a d = 0 control, the 16 test units at 0.6 cm (:data:`TEST_UNITS`) and the extra
training units (:data:`TRAIN_UNITS`). Raw landmarks are kept so every anchor set can re-align them.

Hold-out: the face model used on London is built without London (Canada neutrals, Canada synth
photos, the videos; ``--lopo`` instead rebuilds it per London person). Figures:

- share kept per unit: (psi_default(unit) - psi_default(control)) projected on (psi_ref(unit) -
  psi_ref(control)) over the latter's squared norm, median over people, and the cosine of the two
  changes (psi_ref: the person's real neutral photo as reference; psi_default: no reference);
- the same with each unit left out of the face model's fit (its shapes and its photos): the
  inverse-crime check;
- who vs what on London (worst vertex and per region), re-identification, pose leak;
- naming: top-named unit right, controls ``unnamed``, defaults vs real neutral;
- video: every frame's psi fitted on that frame alone vs psi from the track's calm-frame neutral
  (face model built without that video), the worst decile's frames listed;
- anchor sets: pose leak and units kept, per set of rigid anchors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from build_face_model import (ANCHORS, TEST_UNITS, VIDEOS, Aligned, align_data, collect_landmarks,  # noqa: E402
                              model_sets, units_of)

from dfe.extraction.identity import FaceModel, build_face_model  # noqa: E402

# ---------------------------------------------------------------------- figures

def fit_psi(model: FaceModel, aligned: np.ndarray, bs: np.ndarray) -> np.ndarray:
    """psi with defaults (a face-model fit on each photo alone); NaN where no face."""
    out = np.full_like(aligned, np.nan)
    for i in range(len(aligned)):
        if not np.isnan(aligned[i, 0, 0]):
            out[i] = aligned[i] - model.fit(aligned[i][None], bs[i][None]).neutral
    return out


def unit_changes(d: dict, a: Aligned, model: FaceModel, condition: str, people: list[int]):
    """(ref change, default change) of one condition on London people: psi(unit) - psi(control)."""
    c = list(d["conditions"]).index(condition)
    s, b = a.synth[:, people], d["synth_bs"][:, people]
    ref = s[c] - s[0]
    dfl = fit_psi(model, s[c], b[c]) - fit_psi(model, s[0], b[0])
    return ref, dfl


def kept(ref: np.ndarray, dfl: np.ndarray) -> tuple[float, float, int]:
    """Median share kept and median cosine over people with both photos."""
    r, f = ref.reshape(len(ref), -1), dfl.reshape(len(dfl), -1)
    ok = ~np.isnan(r[:, 0]) & ~np.isnan(f[:, 0])
    r, f = r[ok], f[ok]
    share = (r * f).sum(1) / (r * r).sum(1)
    cos = (r * f).sum(1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(f, axis=1) + 1e-12)
    return float(np.median(share)), float(np.median(cos)), int(ok.sum())


def worst(psi: np.ndarray) -> np.ndarray:
    return np.linalg.norm(psi.reshape(len(psi), -1, 3), axis=2).max(1)


def region_vertices() -> dict[str, np.ndarray]:
    """The issue's six regions, from the naming model's regions (both sides)."""
    from dfe.views.naming import default_model

    sides = default_model().region_sides
    both = {k: np.union1d(v["left"], v["right"]) for k, v in sides.items()}
    return {"brows": both["brows"], "lids": np.union1d(both["upper eyelids"], both["lower eyelids"]),
            "cheeks": both["cheeks"], "nose": both["nose"],
            "lips": np.union1d(both["lip corners"], np.union1d(both["upper lip"], both["lower lip"])), "jaw": both["jaw"]}


def region_peak(psi: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.linalg.norm(psi.reshape(len(psi), -1, 3)[:, ids], axis=2).max(1)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def who_vs_what(d: dict, a: Aligned, model: FaceModel, people: list[int]) -> dict:
    """Neutral photo's psi vs a smile (worst vertex, per region vs each region's largest unit
    change), smile cosine and size, re-identification: London people, defaults."""
    pn = fit_psi(model, a.london_neutral[people], d["london_neutral_bs"][people])
    ps = fit_psi(model, a.london_smiling[people], d["london_smiling_bs"][people])
    return who_vs_what_of(d, a, pn, ps, people)


def who_vs_what_of(d: dict, a: Aligned, pn: np.ndarray, ps: np.ndarray, people: list[int]) -> dict:
    """:func:`who_vs_what` of given psi of the people's neutral (``pn``) and smiling (``ps``) photos."""
    n = a.london_neutral[people]
    true = a.london_smiling[people] - n
    smile = float(np.median(worst(true)))
    regions = {}
    nl = int(d["synth_london"])
    london_synth = [p for p in people if p < nl]
    for name, ids in region_vertices().items():
        change = max(float(np.nanmedian(region_peak(a.synth[c, london_synth] - a.synth[0, london_synth], ids)))
                     for c in range(1, len(d["conditions"])) if d["conditions"][c] in TEST_UNITS)
        regions[name] = float(np.median(region_peak(pn, ids))) / change
    u = ps.reshape(len(ps), -1) / np.linalg.norm(ps.reshape(len(ps), -1), axis=1, keepdims=True)
    v = pn.reshape(len(pn), -1) / (np.linalg.norm(pn.reshape(len(pn), -1), axis=1, keepdims=True) + 1e-12)
    reid = int((np.argmax(u @ v.T, 1) == np.arange(len(people))).sum())
    size = np.linalg.norm(ps.reshape(len(ps), -1), axis=1) / np.linalg.norm(true.reshape(len(true), -1), axis=1)
    return {"neutral_over_smile": float(np.median(worst(pn))) / smile, "regions": regions,
            "cos": float(np.median(cosine(ps, true))), "size": float(np.median(size)), "reid": reid, "n": len(people)}


def lopo_psi(d: dict, a: Aligned, people: list[int]) -> dict[str, np.ndarray]:
    """Leave-one-person-out psi: each London person through the shipped recipe built on the other
    faces (and the other London smiles): ``neutral``, ``smiling`` (people, 468, 3) and ``synth``
    (conditions, people, 468, 3)."""
    out = {"neutral": np.full_like(a.london_neutral[people], np.nan), "smiling": np.full_like(a.london_smiling[people], np.nan),
           "synth": np.full_like(a.synth[:, people], np.nan)}
    for i, p in enumerate(people):
        model = build_face_model(**model_sets(d, a, "synth+units", london_people=[q for q in people if q != p]))
        out["neutral"][i] = fit_psi(model, a.london_neutral[[p]], d["london_neutral_bs"][[p]])[0]
        out["smiling"][i] = fit_psi(model, a.london_smiling[[p]], d["london_smiling_bs"][[p]])[0]
        for c in range(len(a.synth)):
            out["synth"][c, i] = fit_psi(model, a.synth[c, [p]], d["synth_bs"][c, [p]])[0]
    return out


def lopo(d: dict, a: Aligned, people: list[int]) -> tuple[dict, dict]:
    """Leave-one-person-out figures (:func:`lopo_psi`): (share table, who vs what)."""
    conds = list(d["conditions"])
    psi = lopo_psi(d, a, people)
    synth = psi["synth"]
    shares = {u: kept(a.synth[conds.index(u), people] - a.synth[0, people], synth[conds.index(u)] - synth[0])
              for u in TEST_UNITS}
    return shares, who_vs_what_of(d, a, psi["neutral"], psi["smiling"], people)


def tradeoff_grid(d: dict, a: Aligned, people: list[int]) -> None:
    """Landmark noise x identity prior x synth weight of the Canada-only model: neutral/smile
    against the smallest shares kept."""
    import dataclasses
    import itertools

    print("\nTrade-off grid (Canada-only model): noise, identity prior scale, synth weight -> "
          "neutral/smile, re-id, the three smallest shares, median share")
    for noise, scale, weight in itertools.product((0.05, 0.1, 0.2), (0.5, 1.0, 2.0), (1.0, 3.0)):
        m = build_face_model(**model_sets(d, a, "synth+units", synth_weight=weight), noise=noise)
        m = dataclasses.replace(m, identity_var=m.identity_var * scale)
        w, sh = who_vs_what(d, a, m, people), share_table(d, a, m, people)
        low = sorted(sh.items(), key=lambda kv: kv[1][0])[:3]
        print(f"  noise {noise} cm, prior x{scale}, synth weight {weight}: neutral/smile {w['neutral_over_smile']:.2f}, "
              f"re-id {w['reid']}/{w['n']}; " + ", ".join(f"{k} {v[0]:.2f}" for k, v in low)
              + f"; median {np.median([v[0] for v in sh.values()]):.2f}", flush=True)


def pose_leak(d: dict, a: Aligned, model: FaceModel | None, smile_cm: float) -> float:
    """Worst-vertex spread of the 8 pose photos' psi around their mean, over the median smile."""
    psi = a.pose if model is None else fit_psi(model, a.pose, d["pose_bs"])
    return float(np.median(worst(psi - psi.mean(0)))) / smile_cm


def top_unit_right(psi: np.ndarray, condition: str) -> bool | None:
    from dfe.views.naming import name_displacement

    if np.isnan(psi[0, 0]):
        return None
    named = name_displacement(psi)
    if named.name == "unnamed" or not named.action_units:
        return False
    return named.action_units[0]["au"] in units_of(condition)


def naming(d: dict, a: Aligned, model: FaceModel, people: list[int]) -> dict:
    """Top-named unit right (unit photos) and ``unnamed`` (controls), real neutral vs defaults."""
    from dfe.views.naming import name_displacement

    neutral = a.london_neutral[people]
    out = {"ref": [], "default": [], "ref_unnamed": 0, "default_unnamed": 0}
    for cond in TEST_UNITS:
        c = list(d["conditions"]).index(cond)
        s, b = a.synth[c, people], d["synth_bs"][c, people]
        dfl = fit_psi(model, s, b)
        for j in range(len(people)):
            for key, psi in (("ref", s[j] - neutral[j]), ("default", dfl[j])):
                right = top_unit_right(psi, cond)
                if right is not None:
                    out[key].append(right)
    s, b = a.synth[0, people], d["synth_bs"][0, people]
    dfl = fit_psi(model, s, b)
    ok = ~np.isnan(s[:, 0, 0])
    out["ref_unnamed"] = float(np.mean([name_displacement(x).name == "unnamed" for x in (s - neutral)[ok]]))
    out["default_unnamed"] = float(np.mean([name_displacement(x).name == "unnamed" for x in dfl[ok]]))
    out["ref"], out["default"] = float(np.mean(out["ref"])), float(np.mean(out["default"]))
    return out


def video_check(d: dict, a: Aligned, build) -> dict:
    """Every frame of each shared video: psi fitted on that frame alone vs psi from the track's
    calm-frame neutral, the face model built without that video (``build(videos)``)."""
    from dfe.extraction.identity import calm_frames

    out = {}
    for v in VIDEOS:
        al, bs = a.videos[v], d[f"video_{v.split('.')[0]}_bs"]
        model = build(tuple(x for x in VIDEOS if x != v))
        calm = calm_frames(bs)
        track = al - model.fit(al[calm], bs[calm]).neutral
        alone = fit_psi(model, al, bs)
        cos = cosine(alone, track)
        frames = d[f"video_{v.split('.')[0]}_frame"]
        order = np.argsort(cos)[: max(1, len(cos) // 10)]
        out[v] = {"median_cos": float(np.median(cos)), "frames": len(cos),
                  "worst_decile": [(int(frames[i]), float(cos[i]), float(worst(track[i:i + 1])[0])) for i in order]}
    return out


def worst_frames_figure(shared: Path, results: dict, out: Path, per_video: int = 8) -> Path:
    """A contact sheet of the worst-decile frames of each video (lowest cosine first), captioned."""
    import cv2

    rows = []
    for v, r in results.items():
        cap = cv2.VideoCapture(str(shared / "videos" / v))
        tiles = []
        for frame, cos, peak in r["worst_decile"][:per_video]:
            cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
            ok, img = cap.read()
            img = cv2.resize(img if ok else np.zeros((360, 640, 3), np.uint8), (320, 180))
            cv2.putText(img, f"{v[:12]} f{frame} cos {cos:.2f} {peak:.1f}cm", (4, 16), cv2.FONT_HERSHEY_SIMPLEX,
                        0.45, (0, 255, 255), 1, cv2.LINE_AA)
            tiles.append(img)
        cap.release()
        tiles += [np.zeros_like(tiles[0])] * (per_video - len(tiles))
        rows.append(np.concatenate([np.concatenate(tiles[:4], 1), np.concatenate(tiles[4:8], 1)], 0))
    cv2.imwrite(str(out), np.concatenate(rows, 0))
    return out


def perfect_landmarks(anchors: str) -> dict[str, float]:
    """Cosine between each test unit's displacement and what a re-alignment on ``anchors`` leaves."""
    from dfe.extraction.expression import realigned
    from dfe.extraction.units import displacement, parse_units

    out = {}
    for name, specs in TEST_UNITS.items():
        dsp = displacement(parse_units(specs))
        out[name] = float(cosine(realigned(dsp, anchors)[None], dsp[None])[0])
    return out


def share_table(d: dict, a: Aligned, model: FaceModel, people: list[int]) -> dict[str, tuple[float, float, int]]:
    return {u: kept(*unit_changes(d, a, model, u, people)) for u in TEST_UNITS}


def print_shares(rows: dict[str, dict]) -> None:
    names = list(rows)
    print(f"{'unit (0.6 cm)':14s} " + " ".join(f"{n:>22s}" for n in names))
    for u in TEST_UNITS:
        print(f"{u:14s} " + " ".join(f"{rows[n][u][0]:>12.2f} cos {rows[n][u][1]:.2f}" for n in names))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dfe_expressions.npz"))
    ap.add_argument("--people", type=int, default=None, help="only the first N people of each set (quick look)")
    ap.add_argument("--skip-louo", action="store_true", help="skip the leave-one-unit-out models (16 builds)")
    ap.add_argument("--lopo", action="store_true", help="also the leave-one-person-out figures (40 builds)")
    ap.add_argument("--grid", action="store_true", help="also the trade-off grid (18 builds)")
    ap.add_argument("--figure", type=Path, default=Path("/tmp/dfe_expressions_worst_frames.png"),
                    help="where to write the worst-decile video frames (outside the repo: real people)")
    args = ap.parse_args(argv)
    d = collect_landmarks(args.shared, args.cache, args.people)
    nl = int(d["synth_london"])
    people = list(range(nl))
    print(f"Held out: the {nl} London people (face models built on Canada neutrals, Canada synth photos and the "
          "videos only)\n")
    aligned = {s: align_data(d, s) for s in ("basis", "rigid", "skull")}
    smile = {s: float(np.median(worst(a.london_smiling - a.london_neutral))) for s, a in aligned.items()}
    models = {"dfe 0.3 (basis anchors, real expressions)": build_face_model(**model_sets(d, aligned["basis"], "dfe 0.3",
                                                                                          anchors="basis"))}
    print("Anchor sets: pose leak (8 pose photos, worst-vertex spread / median smile) and units kept")
    print(f"{'anchors':8s} {'points':>6s} {'leak fixed':>10s} {'leak fit':>8s} {'perfect cos min':>15s} "
          f"{'share min':>9s} {'share median':>12s}")
    from dfe.extraction.mesh import canonical_mesh
    from dfe.extraction.expression import anchor_weights

    for s, a in aligned.items():
        m = build_face_model(**model_sets(d, a, "synth+units", anchors=s))
        models[f"psi v2 ({s} anchors)"] = m
        sh = share_table(d, a, m, people)
        pc = perfect_landmarks(s)
        print(f"{s:8s} {int((anchor_weights(canonical_mesh(), s) > 0).sum()):6d} {pose_leak(d, a, None, smile[s]):10.2f} "
              f"{pose_leak(d, a, m, smile[s]):8.2f} {min(pc.values()):15.2f} {min(v[0] for v in sh.values()):9.2f} "
              f"{np.median([v[0] for v in sh.values()]):12.2f}")
    a = aligned[ANCHORS]
    print("\nShare kept per unit (median over London people; cos: median cosine of the two changes)")
    rows = {"dfe 0.3": share_table(d, aligned["basis"], models["dfe 0.3 (basis anchors, real expressions)"], people)}
    for var in ("synth", "units", "synth+units"):
        rows[var] = share_table(d, a, build_face_model(**model_sets(d, a, var, anchors=ANCHORS)), people)
    if not args.skip_louo:
        rows["synth+units LOUO"] = {u: kept(*unit_changes(d, a, build_face_model(**model_sets(
            d, a, "synth+units", drop_units=units_of(u), anchors=ANCHORS)), u, people)) for u in TEST_UNITS}
    lopo_who = None
    if args.lopo:
        rows["synth+units LOPO"], lopo_who = lopo(d, a, people)
    print_shares(rows)
    if lopo_who:
        w = lopo_who
        print(f"  leave-one-person-out (79 other faces): neutral/smile {w['neutral_over_smile']:.2f}, cos {w['cos']:.3f}, "
              f"size {w['size']:.2f}, re-id {w['reid']}/{w['n']}; " + ", ".join(f"{k} {v:.2f}" for k, v in w["regions"].items()))
    if args.grid:
        tradeoff_grid(d, a, people)
    print("\nWho vs what on London (defaults): neutral/smile worst vertex, per region neutral / largest unit change")
    for name in models:
        al = aligned[name.split("(")[1].split()[0]]
        w = who_vs_what(d, al, models[name], people)
        print(f"  {name}: neutral/smile {w['neutral_over_smile']:.2f}, cos {w['cos']:.3f}, size {w['size']:.2f}, "
              f"re-id {w['reid']}/{w['n']}, pose leak {pose_leak(d, al, models[name], smile['basis']):.2f}; "
              + ", ".join(f"{k} {v:.2f}" for k, v in w["regions"].items()))
    print("\nNaming (16 units, London people): top-named unit right; controls unnamed")
    for name in models:
        al = aligned[name.split("(")[1].split()[0]]
        n = naming(d, al, models[name], people)
        print(f"  {name}: right {n['default']:.2f} with defaults vs {n['ref']:.2f} with the real neutral "
              f"(ratio {n['default'] / max(n['ref'], 1e-9):.2f}); controls unnamed {n['default_unnamed']:.2f} vs "
              f"{n['ref_unnamed']:.2f}")
    print("\nVideo: every frame's psi fitted on the frame alone vs psi from the track's calm-frame neutral "
          "(face model built without that video)")
    for name, anchors, var in (("dfe 0.3", "basis", "dfe 0.3"), ("psi v2", ANCHORS, "synth+units")):
        al = aligned[anchors]
        res = video_check(d, al, lambda vids: build_face_model(**model_sets(d, al, var, videos=vids, anchors=anchors)))
        if name == "psi v2":
            print(f"  worst-decile frames: {worst_frames_figure(args.shared, res, args.figure)}")
        for v, r in res.items():
            worst_frames = ", ".join(f"{f} ({c:.2f}, {p:.2f} cm)" for f, c, p in r["worst_decile"][:8])
            print(f"  {name} {v}: median cos {r['median_cos']:.3f} over {r['frames']} frames; worst decile "
                  f"(frame, cos, track-psi peak): {worst_frames}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
