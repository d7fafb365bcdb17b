"""Names for codes, read off their deformation like a FACS manual entry.

A code's displacement on the canonical face (468 x 3, cm) gets:
- **words**: the regions that move most (lip corners, cheeks, brows, ...), each with its side
  (the person's left or right, or both) and direction in plain words ("lip corners pulled up and
  out, cheeks raised");
- **action units**: the closest FACS units, from the non-negative fit of
  :func:`dfe.extraction.units.unit_contributions` on the reference shapes of each unit and side, with each unit's share and one similarity score (cosine between
  the displacement and the fit);
- ``unnamed`` when the fit explains too little (similarity below 0.5) or nothing moves.

The reference shapes ship in ``dfe/data/naming.npz``: ICT FaceKit's 53 ARKit-named expression
shapes, registered onto MediaPipe's canonical face by ``scripts/build_naming.py`` (MIT, see
``naming.npz.LICENSE``); the ARKit-shape -> FACS table is ICT FaceKit's. Nothing here is fitted on
the user's tables, so one model always gets the same names. "Left" is the person's own left (the
+x side of the canonical face, MediaPipe's left eye).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dfe.extraction.face import BLENDSHAPE_NAMES
from dfe.extraction.mesh import canonical_mesh
from dfe.extraction.units import ACTION_UNITS, DATA_FILE, ONE_SIDED, unit_contributions  # the FACS table and the unit fit live with the unit shapes

MIN_SIMILARITY = 0.5
MIN_PEAK_CM = 0.02


class NamedRegion(NamedTuple):
    """A part of the face that names say moves: the vertices within ``radius_cm`` of its centre
    vertices on MediaPipe's mesh, on each side, and its words for moving up and down."""

    right_centres: list[int]
    left_centres: list[int]
    radius_cm: float
    up: str
    down: str


NAMED_REGIONS = {name: NamedRegion(*spec) for name, spec in {
    "brows": ([70, 63, 105, 66, 107, 55], [300, 293, 334, 296, 336, 285], 0.6, "raised", "lowered"),
    "upper eyelids": ([159, 158, 160], [386, 385, 387], 0.35, "raised", "lowered"),
    "lower eyelids": ([145, 144, 153], [374, 373, 380], 0.35, "raised", "lowered"),
    "cheeks": ([50, 117, 118], [280, 346, 347], 1.0, "raised", "lowered"),
    "nose": ([48, 64, 102], [278, 294, 331], 0.6, "wrinkled up", "pulled down"),
    "lip corners": ([61], [291], 0.55, "pulled up", "pulled down"),
    "upper lip": ([37, 39, 40], [267, 269, 270], 0.45, "raised", "lowered"),
    "lower lip": ([84, 181, 91], [314, 405, 321], 0.45, "raised", "lowered"),
    "jaw": ([148, 176, 149], [377, 400, 378], 1.2, "raised", "dropped"),
}.items()}
# midline vertices of a region, counted on both of its sides
MIDLINE = {"upper lip": [0, 13], "lower lip": [17, 14], "jaw": [152, 175, 199], "nose": [1, 4, 5]}


@dataclass
class CodeName:
    """What a code does, in words and action units."""

    name: str  # plain words, or "unnamed"
    action_units: list[dict] = field(default_factory=list)  # {"au", "title", "side", "share"}
    similarity: float = 0.0  # cosine between the displacement and its action-unit fit
    regions: list[dict] = field(default_factory=list)  # {"region", "side", "cm", "words"}
    peak_cm: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class NamingModel:
    shapes: np.ndarray  # (S, 468, 3) reference shapes, canonical cm
    names: tuple[str, ...]
    vertices: np.ndarray  # (468, 3) canonical face

    @classmethod
    def load(cls, path: str | Path = DATA_FILE) -> "NamingModel":
        with np.load(path) as z:
            shapes = z["shapes"].reshape(len(z["names"]), -1, 3)
            return cls(shapes, tuple(str(n) for n in z["names"]), canonical_mesh().vertices)

    @cached_property
    def candidates(self) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """One column per (unit, side): the unit's shape on that side alone (or its single shape).
        Built once per model."""
        cols, keys = [], []
        index = {n: i for i, n in enumerate(self.names)}
        for au, (_, shapes) in ACTION_UNITS.items():
            sides = [("left", s) for s in shapes if s.endswith("Left")] + [("right", s) for s in shapes if s.endswith("Right")]
            if sides:
                for side, s in sides:
                    cols.append(self.shapes[index[s]].ravel())
                    keys.append((au, side))
            else:
                cols.append(sum(self.shapes[index[s]] for s in shapes).ravel())
                keys.append((au, ""))
        return np.stack(cols, 1), keys

    @cached_property
    def region_sides(self) -> dict[str, dict[str, np.ndarray]]:
        """Per region, the vertex ids of its right and left side (midline vertices in both).
        Built once per model."""
        out = {}
        for region, spec in NAMED_REGIONS.items():
            sides = {"right": self._near(spec.right_centres, spec.radius_cm),
                     "left": self._near(spec.left_centres, spec.radius_cm)}
            if region in MIDLINE:
                mid = self._near(MIDLINE[region], spec.radius_cm)
                sides = {k: np.union1d(v, mid) for k, v in sides.items()}
            out[region] = sides
        return out

    def _near(self, centres: list[int], radius: float) -> np.ndarray:
        d = np.linalg.norm(self.vertices[:, None, :] - self.vertices[centres][None], axis=2).min(1)
        return np.flatnonzero(d <= radius)


@lru_cache(maxsize=1)
def default_model() -> NamingModel:
    return NamingModel.load()


def fit_action_units(displacement: np.ndarray, model: NamingModel | None = None) -> tuple[list[dict], float]:
    """Non-negative fit of a (468, 3) displacement on the units' reference shapes: units with at
    least 15% of the fit (left and right of one unit merged into both sides when the weaker side
    has at least half the stronger's share) and the fit's cosine to the displacement."""
    model = model or default_model()
    A, keys = model.candidates
    part, similarity = unit_contributions(displacement, A)
    by_unit: dict[str, dict[str, float]] = {}
    for (au, side), p in zip(keys, part):
        by_unit.setdefault(au, {})[side] = p
    total = part.sum()
    units = []
    for au, sides in by_unit.items():
        share = sum(sides.values()) / total if total > 0 else 0.0
        if share < 0.15:
            continue
        side = ""
        if set(sides) == {"left", "right"}:
            lo, hi = sorted(sides.values())
            if lo < 0.5 * hi:
                side = max(sides, key=sides.get)
            elif au in ONE_SIDED:  # the jaw cannot go left and right at once: the fit used it as filler
                continue
        units.append({"au": au, "title": ACTION_UNITS[au][0], "side": side, "share": round(float(share), 3)})
    units.sort(key=lambda u: -u["share"])
    return units, similarity


def describe_regions(displacement: np.ndarray, model: NamingModel | None = None) -> list[dict]:
    """The regions that move, strongest first: side, mean displacement (cm) and plain words."""
    model = model or default_model()
    disp = np.asarray(displacement, dtype=float).reshape(-1, 3)
    found = []
    for region, spec in NAMED_REGIONS.items():
        sides = model.region_sides[region]
        mags = {k: float(np.linalg.norm(disp[v], axis=1).mean()) for k, v in sides.items()}
        strong = max(mags.values())
        if strong < MIN_PEAK_CM:
            continue
        moving = [k for k, m in mags.items() if m >= 0.5 * strong]
        side = "both" if len(moving) == 2 else moving[0]
        vec = np.mean([disp[sides[k]].mean(0) * np.array([1.0 if k == "left" else -1.0, 1, 1]) for k in moving], axis=0)
        words = _direction_words(vec, spec.up, spec.down)
        if not words:
            continue
        found.append({"region": region, "side": side, "cm": round(strong, 3), "words": words})
    found.sort(key=lambda r: -r["cm"])
    return found


def _direction_words(vec: np.ndarray, up: str, down: str) -> str:
    """Plain words for a mean displacement (x already mirrored so +x = away from the midline)."""
    norm = np.linalg.norm(vec)
    if norm == 0:
        return ""
    x, y, z = vec / norm
    parts = []
    if abs(y) >= 0.45:
        parts.append(up if y > 0 else down)
    if abs(x) >= 0.45:
        parts.append("out" if x > 0 else "in")
    if abs(z) >= 0.45:
        parts.append("forward" if z > 0 else "back")
    if not parts:
        return ""
    if parts[0] in ("out", "in", "forward", "back"):
        parts[0] = {"out": "pulled out", "in": "pulled in", "forward": "pushed forward", "back": "pulled back"}[parts[0]]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _phrase(region: dict) -> str:
    name = region["region"]
    if region["side"] != "both":
        singular = {"brows": "brow", "upper eyelids": "upper eyelid", "lower eyelids": "lower eyelid",
                    "cheeks": "cheek", "lip corners": "lip corner"}.get(name, name + " side")
        name = f"{region['side']} {singular}"
    return f"{name} {region['words']}"


def name_displacement(displacement: np.ndarray, model: NamingModel | None = None, max_regions: int = 2) -> CodeName:
    """Name one (468, 3) displacement (cm on the canonical face)."""
    model = model or default_model()
    disp = np.asarray(displacement, dtype=float).reshape(-1, 3)
    peak = float(np.linalg.norm(disp, axis=1).max()) if disp.size else 0.0
    if peak < MIN_PEAK_CM:
        return CodeName("unnamed", peak_cm=peak)
    units, similarity = fit_action_units(disp, model)
    regions = describe_regions(disp, model)
    if similarity < MIN_SIMILARITY or not units or not regions:
        return CodeName("unnamed", units, round(similarity, 3), regions, round(peak, 3))
    top = [r for r in regions if r["cm"] >= 0.5 * regions[0]["cm"]][:max_regions]
    return CodeName(", ".join(_phrase(r) for r in top), units, round(similarity, 3), regions, round(peak, 3))


def blendshape_geometry(scores: np.ndarray, model: NamingModel | None = None) -> np.ndarray:
    """(..., 52) MediaPipe blendshape scores (or a change in them) -> (..., 468, 3) displacement
    from the reference shapes of the same ARKit names (``_neutral`` has none)."""
    model = model or default_model()
    index = {n: i for i, n in enumerate(model.names)}
    basis = np.stack([model.shapes[index[n]] if n in index else np.zeros_like(model.shapes[0]) for n in BLENDSHAPE_NAMES])
    scores = np.asarray(scores, dtype=float)
    return np.tensordot(scores, basis, axes=([-1], [0]))


def code_geometry(tok, codes, model: NamingModel | None = None) -> np.ndarray | None:
    """Codes' displacements on the canonical face (n, 468, 3), decoded together; None for FLAME."""
    kind = tok.config.psi_kind
    if kind not in ("geometry", "blendshapes"):
        return None
    deformations = tok.decode_code(np.asarray(list(codes), dtype=np.int64))
    if kind == "geometry":
        return deformations.reshape(len(deformations), -1, 3)
    return blendshape_geometry(deformations, model)


def name_codes(tok, codes=None, model: NamingModel | None = None) -> dict[int, CodeName]:
    """Names of a tokenizer's codes (all, or ``codes``). Geometry codes are named from their
    displacement; blendshape-kind codes from the reference shapes their blendshapes stand for
    (not from a rig fitted on the user's tables); FLAME codes are left unnamed."""
    codes = [int(c) for c in (range(tok.codebook_size) if codes is None else codes)]
    geometry = code_geometry(tok, codes, model) if codes else None
    if geometry is None:
        return {c: CodeName("unnamed") for c in codes}
    return {c: name_displacement(g, model) for c, g in zip(codes, geometry)}
