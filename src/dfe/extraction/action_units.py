"""FACS action-unit intensities per frame, on :mod:`dfe.extraction.units`' intensity scale, in OpenFace's columns.

Two sources, both in cm of peak movement (``AU12_r = 0.8`` reads the displacement ``dfe synth
--unit AU12=0.8`` applies):

- **geometry** (``AU01_r`` ...): each frame's psi fitted non-negatively (NNLS) on the 40 side units
  at once, so neighbours compete. The basis (``basis="measured"``, the default since dfe 0.7, AU
  version 2) is each unit's *measured response*: what MediaPipe's mesh returns for a photo that
  ``dfe synth`` warped by the unit, per cm, measured on the Canada people
  (:mod:`dfe.extraction.unit_responses`, built by ``scripts/build_unit_responses.py``), fitted
  with a ridge (in the file's metadata) so that weakly followed units do not amplify noise, and each
  unit's coefficient times a gain that makes the median Canada photo warped by the unit at 0.6 cm
  read 0.6. So ``AU12_r = 0.6`` is what MediaPipe shows of ``dfe synth --unit AU12=0.6``, and units
  the mesh follows weakly (AU6, AU14) are still read. Exceptions to that scale: the jaw drop,
  lower-lip depressor, pucker and funneler keep ICT's own shape with gain 1 (a 2D warp cannot show
  them; an exact ICT AU26=0.6 reads 0.57), and AU5, AU28, AU29, AU30, AU33 have no synth photos
  (ICT's shape x the median measured ratio, median gain: an estimate). Units that move the same
  vertices share movement (AU6/AU7, AU12/AU14: a smile reads some AU14). ``basis="shapes"`` fits ICT
  FaceKit's registered shapes (:func:`dfe.extraction.units.unit_basis`; dfe 0.4-0.6, AU version 1),
  which read such photos at 0-0.4 and AU6 at 0. A bilateral unit's ``_r`` is the mean of its two sides' coefficients. The
  least squares system is reduced once to its (40 x 40) Cholesky factor, so a frame costs one small NNLS.
- **blendshapes** (``AU01_r_blendshapes`` ...): MediaPipe's ARKit scores through ICT FaceKit's
  ARKit -> FACS table: a score ``b`` of shape ``s`` is intensity ``b * peak(s)`` (the peak vertex
  movement of ICT's shape ``s`` at weight 1); bilateral units average their sides.

Units without their own shape: AU23 (lip tightener; ICT has none) is NaN in both sources. AU25 (lips
part) is measured on the mesh only: the increase of the inner-lip gap (vertices 13-14) over the
neutral's, cm; NaN from blendshapes. AU26 is ICT's ``jawOpen`` shape (ICT's AU26/27 share it; AU27
is not told apart). Presence ``_c`` is ``_r >= threshold[au]``, with one set of thresholds for psi
measured from a real neutral face and a higher one for psi whose neutral the face model fitted
(both chosen on Canada people by ``bench/action_units.py``); AU23_c is NaN.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from dfe.extraction.face import BLENDSHAPE_NAMES
from dfe.extraction.gaze import gaze_from_landmarks, image_size
from dfe.extraction.unit_responses import (RESPONSE_FILE, fit_coefficients, measured_response_file,  # noqa: F401
                                           measured_unit_basis, nnls_solver)
from dfe.extraction.units import ACTION_UNITS, arkit_peak, canonical_au, unit_basis
from dfe.table import (AU_BLENDSHAPE_COLUMNS, AU_INTENSITY_COLUMNS, AU_PRESENCE_COLUMNS, FRAME_AU_GAZE_COLUMNS,
                       OPENFACE_AU_INTENSITY, OPENFACE_AU_PRESENCE)

AU_VERSION = 2  # how AU*_r is made, recorded in every table (``au_version``): 1 = ICT's shapes (dfe 0.4-0.6)
BASES = ("measured", "shapes")  # the geometry source's unit basis (see the module docstring)
NOT_MEASURED = {"AU23"}  # no unit shape in ICT FaceKit: NaN, never a copy of another unit
UNIT_NAMES = {au: ACTION_UNITS[canonical_au(au)][0] for au in OPENFACE_AU_PRESENCE if au not in ("AU23", "AU25")}
UNIT_NAMES.update({"AU23": "lip tightener", "AU25": "lips part"})
LIP_GAP = (13, 14)  # MediaPipe's inner upper / lower lip midpoints
# Presence thresholds (cm), chosen by bench/action_units.py on the 40 Canada people (no London person in
# any fit they come from), read on the measured unit basis (built on the same Canada people's synth
# photos), as the 97.5th percentile of what a neutral face reads, at least 0.05 cm:
# - PRESENCE_THRESHOLDS, for psi whose neutral the face model fitted (single photos, tracks under
#   ``auto``/``model``): the Canada neutral photos and their d = 0 synth controls, each read through a
#   psi version 2 face model built without the person (5 folds). A stranger's face shape leaks into such
#   psi, so these are higher.
# - PRESENCE_THRESHOLDS_REFERENCE, for psi measured from a real neutral (a neutral photo, or a
#   track's own calm frames under ``--identity track``): the d = 0 controls against their unwarped photo
#   and each of the 8 pose photos of one still person against the median of the other 7 (head turns
#   and camera distance are the noise a real neutral leaves).
PRESENCE_THRESHOLDS: dict[str, float] = {
    "AU01": 0.552, "AU02": 0.673, "AU04": 0.501, "AU05": 0.294, "AU06": 0.556, "AU07": 0.571, "AU09": 0.355,
    "AU10": 0.444, "AU12": 0.377, "AU14": 0.907, "AU15": 0.410, "AU17": 0.650, "AU20": 0.371, "AU25": 0.051,
    "AU26": 0.269, "AU45": 0.170, "AU28": 0.301}
PRESENCE_THRESHOLDS_REFERENCE: dict[str, float] = {
    "AU01": 0.401, "AU02": 0.240, "AU04": 0.501, "AU05": 0.302, "AU06": 0.090, "AU07": 0.095, "AU09": 0.182,
    "AU10": 0.416, "AU12": 0.050, "AU14": 0.528, "AU15": 0.313, "AU17": 1.006, "AU20": 0.101, "AU25": 0.050,
    "AU26": 0.240, "AU45": 0.209, "AU28": 0.090}
REAL_NEUTRAL_SOURCES = ("image:", "track")  # neutral_source values measured from a real neutral face


def measured_from_real_neutral(neutral_source) -> np.ndarray:
    """Per row: is psi measured from a real neutral face (a neutral photo ``image:...``, or ``track``)
    rather than a face-model fit? Missing sources (old tables) count as fits."""
    src = pd.Series(neutral_source, dtype=object).fillna("").astype(str)
    return (src.str.startswith(REAL_NEUTRAL_SOURCES[0]) | (src == REAL_NEUTRAL_SOURCES[1])).to_numpy()


@lru_cache(maxsize=len(BASES))
def _solver(basis_name: str) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """The fit of a named basis and its per-unit gains (coefficients -> cm)."""
    if basis_name not in BASES:
        raise ValueError(f"unknown unit basis {basis_name!r}; choose one of {', '.join(BASES)}")
    if basis_name == "measured":
        basis, gain, meta = measured_response_file()
        return nnls_solver(basis, float(meta["ridge"])), gain
    basis, _ = unit_basis()
    return nnls_solver(basis), np.ones(basis.shape[1])


def unit_coefficients(psi: np.ndarray, basis: str = "measured") -> np.ndarray:
    """Non-negative intensities (n, U), cm, of every side unit (columns of
    :func:`dfe.extraction.units.unit_basis`) for geometry psi (n, 1404) in cm, fitted on ``basis``
    (:data:`BASES`); NaN rows stay NaN."""
    solver, gain = _solver(basis)
    return fit_coefficients(solver, psi) * gain


@lru_cache(maxsize=1)
def _openface_columns() -> list[list[int]]:
    """For each OpenFace intensity unit, the unit-basis columns averaged into it."""
    _, units = unit_basis()
    cols = []
    for au in OPENFACE_AU_INTENSITY:
        if au in NOT_MEASURED or au == "AU25":
            cols.append([])
            continue
        name = canonical_au(au)
        cols.append([i for i, u in enumerate(units) if u.au == name])
    return cols


def lip_separation(psi: np.ndarray) -> np.ndarray:
    """AU25 from the mesh: how much the inner-lip gap opened over the neutral's (cm, >= 0)."""
    v = np.atleast_2d(np.asarray(psi, dtype=np.float64)).reshape(len(psi), -1, 3)
    upper, lower = LIP_GAP
    return np.clip(v[:, upper, 1] - v[:, lower, 1], 0.0, None)


def geometry_intensities(psi: np.ndarray, coefficients: np.ndarray | None = None) -> np.ndarray:
    """(n, 17) OpenFace intensities (``AU01_r`` ... ``AU45_r`` order) from geometry psi."""
    coef = unit_coefficients(psi) if coefficients is None else coefficients
    out = np.full((len(coef), len(OPENFACE_AU_INTENSITY)), np.nan)
    for j, cols in enumerate(_openface_columns()):
        if cols:
            out[:, j] = coef[:, cols].mean(1)
    out[:, OPENFACE_AU_INTENSITY.index("AU25")] = lip_separation(psi)
    return out


@lru_cache(maxsize=1)
def _blendshape_map() -> np.ndarray:
    """(52, 17) matrix M: intensities = scores @ M (ICT's ARKit -> FACS table, peaks in cm)."""
    index = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}
    m = np.zeros((len(BLENDSHAPE_NAMES), len(OPENFACE_AU_INTENSITY)))
    for j, au in enumerate(OPENFACE_AU_INTENSITY):
        if au in NOT_MEASURED or au == "AU25":
            m[:, j] = np.nan
            continue
        shapes = ACTION_UNITS[canonical_au(au)][1]
        for s in shapes:
            mp = s if s in index else s.removesuffix("Left").removesuffix("Right")  # browInnerUp has no sides
            m[index[mp], j] += arkit_peak(s) / len(shapes)  # bilateral: the mean of the sides
    return m


def blendshape_intensities(blendshapes: np.ndarray) -> np.ndarray:
    """(n, 17) OpenFace intensities from MediaPipe's 52 blendshape scores (NaN for AU23, AU25)."""
    b = np.atleast_2d(np.asarray(blendshapes, dtype=np.float64))
    m = _blendshape_map()
    measured = np.isfinite(m).all(0)
    out = np.full((len(b), m.shape[1]), np.nan)
    out[:, measured] = b @ m[:, measured]
    return out


def presence(intensities: np.ndarray, au28: np.ndarray, thresholds: dict[str, float] | None = None) -> np.ndarray:
    """(n, 18) OpenFace presence (0/1, NaN where not measured or no face) from the 17 intensities
    and the AU28 (lip suck) coefficient."""
    thresholds = PRESENCE_THRESHOLDS if thresholds is None else thresholds
    values = dict(zip(OPENFACE_AU_INTENSITY, np.asarray(intensities, dtype=np.float64).T))
    values["AU28"] = np.asarray(au28, dtype=np.float64)
    out = np.full((len(values["AU28"]), len(OPENFACE_AU_PRESENCE)), np.nan)
    for j, au in enumerate(OPENFACE_AU_PRESENCE):
        x = values[au]
        if au in thresholds:
            out[:, j] = np.where(np.isfinite(x), (x >= thresholds[au]).astype(float), np.nan)
    return out


def action_unit_table(psi: np.ndarray, blendshapes: np.ndarray, thresholds: dict[str, float] | None = None,
                      real_neutral: np.ndarray | None = None, basis: str = "measured") -> pd.DataFrame:
    """The per-frame action-unit columns (``AU*_r``, ``AU*_c``, ``AU*_r_blendshapes``) of geometry
    psi (n, 1404) and blendshapes (n, 52); rows without a face are NaN. Presence uses ``thresholds``
    if given, else per row :data:`PRESENCE_THRESHOLDS_REFERENCE` where ``real_neutral`` (n bools, see
    :func:`measured_from_real_neutral`) and :data:`PRESENCE_THRESHOLDS` elsewhere (both chosen for the
    measured basis)."""
    coef = unit_coefficients(psi, basis)
    r = geometry_intensities(psi, coef)
    _, units = unit_basis()
    au28 = coef[:, [i for i, u in enumerate(units) if u.au == "AU28"]].mean(1)
    ref = (np.asarray(real_neutral, bool) if thresholds is None and real_neutral is not None
           else np.zeros(len(r), bool))
    c = np.empty((len(r), len(AU_PRESENCE_COLUMNS)))
    c[~ref] = presence(r[~ref], au28[~ref], thresholds)
    c[ref] = presence(r[ref], au28[ref], PRESENCE_THRESHOLDS_REFERENCE)
    bs = blendshape_intensities(blendshapes)
    data = np.concatenate([r, c, bs], 1)
    return pd.DataFrame(data, columns=AU_INTENSITY_COLUMNS + AU_PRESENCE_COLUMNS + AU_BLENDSHAPE_COLUMNS)


def frame_action_units_and_gaze(psi: np.ndarray, blendshapes: np.ndarray, landmarks: np.ndarray,
                                bbox_w, bbox_h, neutral_source=None) -> pd.DataFrame:
    """The per-frame action units (:mod:`dfe.extraction.action_units`) and gaze (:mod:`dfe.extraction.gaze`) columns of
    n frames: geometry psi (n, 1404), blendshapes (n, 52), normalised landmarks (n, 1434), the
    face boxes (pixels) they span and each row's ``neutral_source`` (which presence thresholds apply);
    last, ``au_version`` (:data:`AU_VERSION`)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(len(psi), -1, 3)
    width, height = image_size(np.asarray(bbox_w, float), np.asarray(bbox_h, float), lm)
    real = None if neutral_source is None else measured_from_real_neutral(neutral_source)
    aus = action_unit_table(psi, blendshapes, real_neutral=real)
    gaze = pd.DataFrame(gaze_from_landmarks(lm, width / height).columns())
    return pd.concat([aus, gaze], axis=1)[FRAME_AU_GAZE_COLUMNS].assign(au_version=AU_VERSION)
