"""Build dfe's measured unit responses (``src/dfe/data/unit_responses.npz``): how each FACS unit's
shape looks once MediaPipe has landmarked a photo showing it, the basis the geometry action units
(``AU*_r``) are fitted on.

    python scripts/build_unit_responses.py [--shared ../shared] [--cache /tmp/dfe_expressions.npz] [-o FILE]

Why: ICT FaceKit's registered shapes (:func:`dfe.extraction.units.unit_basis`) are what ``dfe synth``
applies, not what MediaPipe's mesh returns. The mesh follows a cheek raise (AU6) or a dimpler (AU14)
at a fraction of their size and in a slightly different place, so a fit on ICT's shapes reads 0 for
them and gives their movement to neighbours. Fitting on the measured response instead reads every
unit on the scale ``dfe synth`` applies it (``AU12_r`` ~ 0.6 on a ``--unit AU12=0.6`` photo).

Recipe (Canada people only, so every London person stays held out for bench/action_units.py):
1. the landmark cache of scripts/build_face_model.py (``collect_landmarks``): every Canada neutral
   photo warped by each single-unit condition of :data:`build_face_model.CONDITIONS` at 0.6 cm and
   by nothing (the d = 0 control), JPEG, MediaPipe again, aligned on the 33 basis points;
2. per condition, the median over the 40 people of (unit photo - control photo) / intensity: the
   response to 1 cm of the unit;
3. a bilateral unit's response is split into its two sides by how much each side's ICT shape moves
   each vertex (cutting each response to where ICT's shape moves was tried and lost; see below);
4. units no condition shows (AU5, AU28, AU29, AU30, AU33) keep ICT's shape times the median ratio of
   measured to applied movement; the units a 2D warp cannot show (:data:`SHAPE_UNITS`: the jaw drop
   and lower-lip depressor open the mouth, whose inside the warp cannot paint; pucker and funneler
   push the lips forward, along the camera's axis) keep ICT's own shape with gain 1. This set was
   chosen on the shared videos (none of them in this file; AU16's warp alone is followed well, cos
   0.89, but its measured response took the laugh's jaw drop too): measured responses for those units
   read the jaw drop of a laugh as lip and chin units: Spearman of AU26_r with the jawOpen blendshape
   0.16 and -0.78 on the two videos, median AU26_r 0 while the lips are apart; with ICT's shapes for
   them 0.75 and 0.71, and AU12_r's agreement with mouthSmile rises from 0.71 to 0.94 on
   WolfgangLanger_Pexels.mp4;
5. the fit is ridge-regularised non-negative least squares, ``|B c - psi|^2 + lambda |c|^2`` with lambda =
   :data:`RIDGE` x the median squared norm of B's columns (stored in the file's metadata): without
   it, units the mesh follows weakly (small responses) read any nearby movement as a large
   intensity (AU14 0.74 on real smiles);
6. each side unit's coefficient is multiplied by a gain, the applied 0.6 cm over the median
   coefficient of its photos (the ridge shrinks, and a side's share differs), so the median Canada
   photo of a unit reads 0.6: the ``dfe synth`` scale as MediaPipe shows it.

The support mask and :data:`RIDGE` were chosen by 5-fold cross-validation on the Canada people (responses
and gains from 4 folds, read on the 5th; the synth photos with the real neutral and through face
models built without the fold): mean AUC of each unit's own ``_r`` over the single-unit photos, and
the mean reading of units not applied (cm, after the gains). Support 0 / 0.1 / 0.3 (ridge 0.3):
single-photo AUC 0.882 / 0.872 / 0.874. Ridge 0 / 0.03 / 0.1 / 0.3 / 0.6 (support 0): single-photo AUC
0.843 / 0.869 / 0.881 / 0.882 / 0.878, with the real neutral 0.989 / 0.994 / 0.994 / 0.992 / 0.991;
readings of units not applied grow with the ridge (0.055 / 0.059 / 0.066 / 0.073 cm from 0.03 up), so
0.1: the smallest ridge within 0.001 of the best single-photo AUC. ICT's shapes without ridge (dfe
0.6): 0.807 single, 0.919 with the real neutral. A non-negative lasso instead of the ridge lost AUC
(0.85 single at its best) and left some units reading 0 on their own photos.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_face_model import ANCHORS, CONDITIONS, CREDITS, align_data, collect_landmarks  # noqa: E402

from dfe.extraction.unit_responses import RESPONSE_FILE, fit_coefficients, nnls_solver  # noqa: E402
from dfe.extraction.units import Unit, is_bilateral, parse_units, unit_basis, unit_shape  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHAPE_UNITS = ("AU16", "AU18", "AU22", "AU26/27")  # ICT's shape, gain 1: a 2D warp cannot show them (step 4)
RIDGE = 0.1  # ridge of the non-negative fit, as a share of the median squared norm of the basis' columns


def single_unit_conditions() -> dict[str, tuple[str, float]]:
    """Conditions that apply one whole unit (both sides, or a midline unit): name -> (unit, cm)."""
    out = {}
    for name, specs in CONDITIONS.items():
        if len(specs) == 1:
            (unit, x), = parse_units(specs)
            if not unit.side:
                out[name] = (unit.au, x)
    return out


def unit_responses(synth: np.ndarray, conditions: list[str], people: list[int]) -> dict[str, np.ndarray]:
    """Per unit with a single-unit condition: the median over ``people`` of (unit photo - control
    photo) / intensity, (468, 3) cm per cm. ``synth``: aligned meshes (conditions, people, 468, 3)."""
    control = synth[conditions.index("control"), people]
    return {au: np.nanmedian(synth[conditions.index(name), people] - control, axis=0) / x
            for name, (au, x) in single_unit_conditions().items()}


def side_weights(au: str, side: str) -> np.ndarray:
    """(468,) share of each vertex's movement that belongs to ``side`` of a bilateral unit."""
    left, right = (np.linalg.norm(unit_shape(Unit(au, s)), axis=1) for s in ("left", "right"))
    own = left if side == "left" else right
    return own / np.maximum(left + right, 1e-12)


def response_basis(responses: dict[str, np.ndarray]) -> tuple[np.ndarray, list[bool]]:
    """(1404, U) basis in :func:`dfe.extraction.units.unit_basis`' column order, and which columns are
    measured (the others are ICT's shape: as it is for :data:`SHAPE_UNITS`, else times the median
    measured/applied ratio)."""
    shapes, units = unit_basis()
    cols, measured, ratios = [], [], []
    for j, u in enumerate(units):
        shape = shapes[:, j].reshape(468, 3)
        if u.au not in responses or u.au in SHAPE_UNITS:
            cols.append(shapes[:, j] if u.au in SHAPE_UNITS else None)
            measured.append(False)
            continue
        r = responses[u.au] * (side_weights(u.au, u.side)[:, None] if u.side and is_bilateral(u.au) else 1.0)
        cols.append(r.ravel())
        measured.append(True)
        ratios.append(np.linalg.norm(r) / np.linalg.norm(shape))
    ratio = float(np.median(ratios))
    basis = np.stack([c if c is not None else shapes[:, j] * ratio for j, c in enumerate(cols)], 1)
    return basis, measured


def unit_gains(basis: np.ndarray, synth: np.ndarray, conditions: list[str], people: list[int],
               ridge: float = RIDGE) -> np.ndarray:
    """(U,) per side unit: the applied intensity over the median coefficient the fit gives photos
    of that unit (against their control photo), so the median photo reads what was applied; units
    without photos get the median gain."""
    solver = nnls_solver(basis, ridge)
    _, units = unit_basis()
    control = synth[conditions.index("control"), people]
    gains = np.full(len(units), np.nan)
    for name, (au, x) in single_unit_conditions().items():
        if au in SHAPE_UNITS:
            continue
        coef = fit_coefficients(solver, (synth[conditions.index(name), people] - control).reshape(len(people), -1))
        for j, u in enumerate(units):
            if u.au == au:
                med = np.nanmedian(coef[:, j])
                gains[j] = x / med if med > 0 else np.nan  # photos that read 0: the median gain
    gains = np.where(np.isfinite(gains), gains, np.nanmedian(gains))
    return np.where([u.au in SHAPE_UNITS for u in units], 1.0, gains)


def median_gain_units(gains: np.ndarray, measured: list[bool]) -> list[str]:
    """The side units whose gain is the median of the others' (no photos, or photos that read 0)."""
    _, units = unit_basis()
    med = np.median([g for g, m in zip(gains, measured) if m])
    return [u.label for u, g, m in zip(units, gains, measured) if not m and u.au not in SHAPE_UNITS and g == med]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dfe_expressions.npz"))
    ap.add_argument("-o", "--out", type=Path, default=RESPONSE_FILE)
    args = ap.parse_args()
    d = collect_landmarks(args.shared, args.cache)
    a = align_data(d, ANCHORS)
    nl = int(d["synth_london"])
    people = list(range(nl, a.synth.shape[1]))  # Canada only
    conditions = list(d["conditions"])
    basis, measured = response_basis(unit_responses(a.synth, conditions, people))
    gain = unit_gains(basis, a.synth, conditions, people)
    _, units = unit_basis()
    meta = {"built_by": "scripts/build_unit_responses.py", "people": len(people), "ridge": RIDGE,
            "shape_units": list(SHAPE_UNITS),
            "units": [u.label for u in units], "gain_range": [round(float(gain.min()), 3), round(float(gain.max()), 3)],
            "median_gain": median_gain_units(gain, measured), "measured": measured, "psi_anchors": ANCHORS,
            "sources": [CREDITS[0], "Unit shapes: ICT FaceKit (MIT), registered onto MediaPipe's face"],
            "licence": "CC BY 4.0 (derived from the Canada set; credit lines in 'sources')"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, basis=basis.astype(np.float32), gain=gain.astype(np.float32),
                        meta=np.array(json.dumps(meta)))
    print(f"wrote {args.out}: {basis.shape[1]} side units, {sum(measured)} measured on {len(people)} Canada people; "
          f"ICT's shapes for: {', '.join(u.label for u, m in zip(units, measured) if not m)}")


if __name__ == "__main__":
    main()
