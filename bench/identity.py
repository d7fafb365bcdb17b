"""Who vs what: how much identity is left in psi, measured on people the face model never saw.

    python bench/identity.py [--shared ../shared] [--task]

London (40 people, neutral + smiling photos): the neutral photo is ground truth only; every face
model used on person P is rebuilt without P (leave-one-person-out), and a second line uses a model
built from Canada neutrals + videos alone (no London person at all). Figures, medians over people:
- neutral/smile: worst-vertex |psi| of the neutral photo / that of the true smile (smile - own neutral)
- cos, size: cosine of the smiling photo's psi to the true smile, and |psi| / |true smile|
- re-id: people whose smiling psi is nearest (cosine) to their own neutral psi (chance: 1 of 40)
Pose photos (one still person, 8 poses): worst-vertex spread of psi around its mean, and that over
the median smile (the pose-leak ratio). Videos: frames whose smile score is above 0.5 only, psi of
each neutral choice vs the track neutral of the full video, with a face model built without that
video. ``--task``: smiling vs neutral from the bag of tokens (tokenizer fitted per fold on the
training people) vs the blendshape functionals, grouped 5-fold by person, Canada-only face model.
Last, the cost of an identity fit per photo and per track.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from build_face_model import VIDEOS, collect_face_data, training_sets  # noqa: E402

from dfe.extraction.identity import FaceModel, build_face_model, calm_frames  # noqa: E402
from dfe.extraction.expression import estimate_neutral  # noqa: E402
from dfe.extraction.mesh import canonical_mesh  # noqa: E402


def worst(psi: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(psi).reshape(len(psi), -1, 3), axis=2).max(1)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def size(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a.reshape(len(a), -1), axis=1) / np.linalg.norm(b.reshape(len(b), -1), axis=1)


def london_figures(psi_neutral: np.ndarray, psi_smile: np.ndarray, true: np.ndarray) -> dict:
    a = psi_smile.reshape(len(true), -1)
    b = psi_neutral.reshape(len(true), -1)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / (np.linalg.norm(b, axis=1, keepdims=True) + 1e-12)
    reid = int((np.argmax(a @ b.T, 1) == np.arange(len(true))).sum())
    smile = np.median(worst(true))
    return {"neutral_cm": float(np.median(worst(psi_neutral))), "neutral_over_smile": float(np.median(worst(psi_neutral)) / smile),
            "cos": float(np.median(cosine(psi_smile, true))), "cos_mean": float(np.mean(cosine(psi_smile, true))),
            "size": float(np.median(size(psi_smile, true))), "reid": reid}


def print_row(name: str, f: dict, n: int) -> None:
    print(f"{name:44s} {f['neutral_over_smile']:5.2f} ({f['neutral_cm']:.2f} cm) {f['cos']:6.3f} ({f['cos_mean']:.3f})"
          f" {f['size']:5.2f} {f['reid']:3d}/{n}")


def photo_psi(model: FaceModel, aligned: np.ndarray, bs: np.ndarray) -> np.ndarray:
    return np.array([a - model.fit(a[None], b[None]).neutral for a, b in zip(aligned, bs)])


def london(data) -> dict:
    true = data.london_smiling - data.london_neutral
    n = len(data.persons)
    print(f"London, {n} people (median smile worst vertex {np.median(worst(true)):.2f} cm)")
    print(f"{'neutral reference':44s} neutral/smile   cos (mean)  size  re-id")
    can = canonical_mesh().vertices
    rows = {"canonical face (dfe 0.1)": (data.london_neutral - can, data.london_smiling - can)}
    pn, ps, rn, rs = [], [], [], []
    for i, p in enumerate(data.persons):
        pool = np.concatenate([data.canada, np.delete(data.london_neutral, i, 0)])
        mean = pool.mean(0)
        pn.append(data.london_neutral[i] - mean)
        ps.append(data.london_smiling[i] - mean)
        model = build_face_model(**training_sets(data, leave_out_person=p))
        rn.append(model.expected_expression(data.london_neutral_bs[i:i + 1])[0])
        rs.append(model.expected_expression(data.london_smiling_bs[i:i + 1])[0])
    rows["population mean neutral (LOPO)"] = (np.array(pn), np.array(ps))
    rows["blendshape rig alone (LOPO)"] = (np.array(rn) + 1e-9, np.array(rs))
    lopo_n, lopo_s = [], []
    for i, p in enumerate(data.persons):
        model = build_face_model(**training_sets(data, leave_out_person=p))
        lopo_n.append(photo_psi(model, data.london_neutral[i:i + 1], data.london_neutral_bs[i:i + 1])[0])
        lopo_s.append(photo_psi(model, data.london_smiling[i:i + 1], data.london_smiling_bs[i:i + 1])[0])
    rows["face model fit (LOPO)  <- dfe default"] = (np.array(lopo_n), np.array(lopo_s))
    canada_only = build_face_model(**training_sets(data, london=False))
    rows["face model fit (Canada + videos only)"] = (
        photo_psi(canada_only, data.london_neutral, data.london_neutral_bs),
        photo_psi(canada_only, data.london_smiling, data.london_smiling_bs))
    out = {}
    for name, (a, b) in rows.items():
        out[name] = london_figures(a.reshape(n, -1), b.reshape(n, -1), true.reshape(n, -1))
        print_row(name, out[name], n)
    return out


def pose_leak(data, smile_cm: float) -> None:
    model = build_face_model(**training_sets(data))
    print("\nPose photos (one still person, 8 poses): worst-vertex spread around the mean psi")
    for name, psi in (("canonical / any fixed neutral", data.pose),
                      ("face model fit per photo", photo_psi(model, data.pose, data.pose_bs))):
        spread = np.median(worst(psi - psi.mean(0)))
        print(f"  {name:36s} {spread:.2f} cm, ratio to the median smile {spread / smile_cm:.2f}")


def videos(data) -> None:
    print("\nVideos: frames with smile score > 0.5 only; psi vs the full video's track-neutral psi "
          "(face model built without that video)")
    print(f"  {'neutral':36s} {'cos':>6s} {'size':>5s}")
    for name in VIDEOS:
        aligned, bs = data.videos[name]
        ref = aligned - estimate_neutral(aligned, bs)[0]
        smiling = bs[:, 44:46].mean(1) > 0.5
        al, b, r = aligned[smiling], bs[smiling], ref[smiling]
        model = build_face_model(**training_sets(data, videos=tuple(v for v in VIDEOS if v != name)))
        calm = calm_frames(b)
        cands = {
            "track neutral of these frames (0.1)": al - estimate_neutral(al, b)[0],
            "model fit over all these frames": al - model.fit(al, b).neutral,
            "model fit over their calm frames  <- auto": al - model.fit(al[calm], b[calm]).neutral,
        }
        print(f"  {name}: {smiling.sum()} of {len(aligned)} frames")
        for label, psi in cands.items():
            print(f"  {label:36s} {np.median(cosine(psi, r)):6.3f} {np.median(size(psi, r)):5.2f}")
        full = aligned - model.fit(aligned[calm_frames(bs)], bs[calm_frames(bs)]).neutral
        big = np.linalg.norm(ref.reshape(len(ref), -1), axis=1) > 1.0
        print(f"  {'(full video, auto vs track, |psi|>1)':36s} {np.median(cosine(full[big], ref[big])):6.3f} "
              f"{np.median(size(full[big], ref[big])):5.2f}")


def cost(data) -> None:
    model = build_face_model(**training_sets(data))
    a, b = data.london_smiling, data.london_smiling_bs
    model.fit(a[:1], b[:1])  # warm the cached gain
    t = time.perf_counter()
    for _ in range(10):
        for i in range(len(a)):
            model.fit(a[i:i + 1], b[i:i + 1])
    per_photo = (time.perf_counter() - t) / (10 * len(a))
    aligned, bs = data.videos[VIDEOS[0]]
    t = time.perf_counter()
    for _ in range(20):
        model.fit(aligned[calm_frames(bs)], bs[calm_frames(bs)])
    per_track = (time.perf_counter() - t) / 20
    print(f"\nCost: identity fit {per_photo * 1e6:.0f} us per photo, {per_track * 1e3:.2f} ms per "
          f"{len(aligned)}-frame track (MediaPipe alone: ~14,000 us per photo)")


def task(data, shared: Path) -> None:
    """Smiling vs neutral on London, extracted with no neutral reference, Canada-only face model."""
    import tempfile

    import pandas as pd

    from dfe.analysis.task import TaskOptions, evaluate_task
    from dfe.extraction.pipeline import ExtractOptions
    from dfe.runs.extract import extract

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_face_model(**training_sets(data, london=False)).save(tmp / "canada.npz")
        extract([shared / "faces" / "london"], tmp / "tables",
                ExtractOptions(face_model=str(tmp / "canada.npz"), progress=False))
        labels = pd.read_csv(shared / "faces" / "london.csv", dtype=str)
        labels["video"] = labels["file"].str.split("/").str[-1].str.rsplit(".", n=1).str[0]
        labels[["video", "expression", "person"]].to_csv(tmp / "labels.csv", index=False)
        options = TaskOptions(group="person", progress=False, refit_tokenizer=True,
                              tokenizer_settings={"codebook_size": 64, "epochs": 20})
        summary = evaluate_task([tmp / "tables"], tmp / "labels.csv", "expression", tmp / "task", options)
        print("\nsmiling vs neutral, London photos without neutral references, grouped 5-fold by person "
              "(face model: Canada + videos; tokenizer fitted per fold on the training people)")
        cols = ["features", "macro_f1_mean", "macro_f1_std", "dfe_minus_this_macro_f1", "ci95_low", "ci95_high"]
        print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--task", action="store_true", help="also run the smiling-vs-neutral task check")
    args = ap.parse_args()
    data = collect_face_data(args.shared)
    london(data)
    pose_leak(data, float(np.median(worst(data.london_smiling - data.london_neutral))))
    videos(data)
    cost(data)
    if args.task:
        task(data, args.shared)


if __name__ == "__main__":
    main()
