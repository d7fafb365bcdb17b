"""FACS action units as displacements of MediaPipe's canonical face, on one intensity scale.

The unit shapes are ICT FaceKit's ARKit-named expression shapes (MIT), registered onto MediaPipe's
canonical face by ``scripts/build_naming.py`` and shipped in ``dfe/data/naming.npz``; the
ARKit-shape -> FACS table below is ICT FaceKit's.

**Intensity scale (one for the whole package).** A unit at intensity ``x`` is its shape scaled so
that its most-moved vertex moves ``x`` cm. A bilateral unit is the sum of its two sides, each at
``x``: ``AU12=0.8`` is ``AU12L=0.8`` plus ``AU12R=0.8``, both lip corners moving 0.8 cm. ``dfe
synth --unit AU12=0.8`` applies that displacement, and an ``AU12_r`` column reads 0.8 on it.

"Left" is the person's own left (the +x side of the canonical face, MediaPipe's left eye).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA_FILE = Path(__file__).parents[1] / "data" / "naming.npz"

# FACS unit -> (name, ARKit shapes); ICT FaceKit's table. Pairs are the unit's left and right side.
ACTION_UNITS: dict[str, tuple[str, list[str]]] = {
    "AU1": ("inner brow raiser", ["browInnerUpLeft", "browInnerUpRight"]),
    "AU2": ("outer brow raiser", ["browOuterUpLeft", "browOuterUpRight"]),
    "AU4": ("brow lowerer", ["browDownLeft", "browDownRight"]),
    "AU5": ("upper lid raiser", ["eyeWideLeft", "eyeWideRight"]),
    "AU6": ("cheek raiser", ["cheekSquintLeft", "cheekSquintRight"]),
    "AU7": ("lid tightener", ["eyeSquintLeft", "eyeSquintRight"]),
    "AU9": ("nose wrinkler", ["noseSneerLeft", "noseSneerRight"]),
    "AU10": ("upper lip raiser", ["mouthShrugUpper"]),
    "AU11": ("nasolabial deepener", ["mouthUpperUpLeft", "mouthUpperUpRight"]),
    "AU12": ("lip corner puller", ["mouthSmileLeft", "mouthSmileRight"]),
    "AU14": ("dimpler", ["mouthDimpleLeft", "mouthDimpleRight"]),
    "AU15": ("lip corner depressor", ["mouthFrownLeft", "mouthFrownRight"]),
    "AU16": ("lower lip depressor", ["mouthLowerDownLeft", "mouthLowerDownRight"]),
    "AU17": ("chin raiser", ["mouthShrugLower"]),
    "AU18": ("lip pucker", ["mouthPucker"]),
    "AU20": ("lip stretcher", ["mouthStretchLeft", "mouthStretchRight"]),
    "AU22": ("lip funneler", ["mouthFunnel"]),
    "AU24": ("lip pressor", ["mouthPressLeft", "mouthPressRight"]),
    "AU26/27": ("jaw drop / mouth stretch", ["jawOpen"]),
    "AU28": ("lip suck", ["mouthRollLower", "mouthRollUpper"]),
    "AU29": ("jaw thrust", ["jawForward"]),
    "AU30": ("jaw sideways", ["jawLeft", "jawRight"]),
    "AU33": ("cheek blow", ["cheekPuffLeft", "cheekPuffRight"]),
    "AU45": ("blink / eyes closed", ["eyeBlinkLeft", "eyeBlinkRight"]),
}

ONE_SIDED = {"AU30"}  # its two shapes are two directions, not two sides
SIDES = {"L": "left", "R": "right", "": ""}
MAX_INTENSITY_CM = 2.0  # beyond 2 cm of movement a unit is no longer a face's expression
_SPEC = re.compile(r"^\s*(AU\d+(?:/\d+)?)([LR]?)\s*=\s*([-+0-9.eE]+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Unit:
    """One action unit on one side ("left", "right", or "" for both / a midline unit)."""

    au: str
    side: str = ""

    @property
    def label(self) -> str:
        return self.au + {"left": "L", "right": "R", "": ""}[self.side]


@lru_cache(maxsize=1)
def _shapes() -> dict[str, np.ndarray]:
    with np.load(DATA_FILE) as z:
        shapes = z["shapes"].reshape(len(z["names"]), -1, 3).astype(np.float64)
        return {str(n): s for n, s in zip(z["names"], shapes)}


def _unit_peak(shape: np.ndarray) -> np.ndarray:
    return shape / np.linalg.norm(shape, axis=1).max()


def is_bilateral(au: str) -> bool:
    shapes = ACTION_UNITS[au][1]
    return au not in ONE_SIDED and len(shapes) == 2 and shapes[0].endswith("Left")


def unit_shape(unit: Unit) -> np.ndarray:
    """(468, 3) displacement of ``unit`` at intensity 1 (its most-moved vertex moves 1 cm; both
    sides of a bilateral unit at 1 cm each)."""
    if unit.au not in ACTION_UNITS:
        raise ValueError(f"unknown action unit {unit.au!r}; known: {', '.join(ACTION_UNITS)}")
    names = ACTION_UNITS[unit.au][1]
    shapes = _shapes()
    if is_bilateral(unit.au):
        left, right = (_unit_peak(shapes[n]) for n in names)
        return {"left": left, "right": right, "": left + right}[unit.side]
    if unit.side:
        raise ValueError(f"{unit.au} has no sides; write {unit.au}=x")
    if unit.au in ONE_SIDED:  # jaw sideways: one direction (the person's left) stands for the unit
        return _unit_peak(shapes[names[0]])
    return _unit_peak(sum(shapes[n] for n in names))


def side_units() -> list[Unit]:
    """Every unit once per side (bilateral units) or once (midline and one-sided units): the
    columns of :func:`unit_basis`."""
    return [Unit(au, side) for au in ACTION_UNITS for side in (("left", "right") if is_bilateral(au) else ("",))]


@lru_cache(maxsize=1)
def unit_basis() -> tuple[np.ndarray, tuple[Unit, ...]]:
    """(1404, U) matrix, one column per side unit at intensity 1, and the units in column order."""
    units = tuple(side_units())
    return np.stack([unit_shape(u).ravel() for u in units], 1), units


def canonical_au(name: str) -> str:
    """``"au01"``, ``"AU1"`` -> ``"AU1"``; ``"AU26"`` or ``"AU27"`` -> ``"AU26/27"``. Raises ValueError."""
    numbers = [str(int(n)) for n in re.findall(r"\d+", name)] if name.upper().startswith("AU") else []
    for au in ACTION_UNITS:
        if numbers and set(numbers) <= set(au[2:].split("/")):
            return au
    raise ValueError(f"unknown action unit {name!r}; known: {', '.join(ACTION_UNITS)}")


def parse_unit(spec: str) -> tuple[Unit, float]:
    """``"AU12L=0.5"`` -> (Unit("AU12", "left"), 0.5). Raises ValueError with one sentence."""
    m = _SPEC.match(spec)
    if not m:
        raise ValueError(f"cannot read unit {spec!r}: write it as AU12=0.8 or AU12L=0.5 (intensity in cm of peak movement)")
    au = canonical_au(m.group(1))
    side = SIDES[m.group(2).upper()]
    unit = Unit(au, side)
    unit_shape(unit)  # validates sides
    return unit, float(m.group(3))


def displacement(units: dict[Unit, float] | list[tuple[Unit, float]]) -> np.ndarray:
    """(468, 3) canonical displacement (cm) of units at their intensities, summed."""
    items = units.items() if isinstance(units, dict) else units
    out = np.zeros((468, 3))
    for unit, x in items:
        out += x * unit_shape(unit)
    return out


def arkit_peak(name: str) -> float:
    """Peak vertex movement (cm) of one ICT FaceKit ARKit shape at weight 1, e.g. ``"mouthSmileLeft"``:
    a blendshape score ``b`` of that shape is a unit intensity of ``b * arkit_peak(name)``."""
    shapes = _shapes()
    if name not in shapes:
        raise ValueError(f"unknown ARKit shape {name!r}")
    return float(np.linalg.norm(shapes[name], axis=1).max())


def check_intensity(unit: Unit, x: float) -> float:
    """``x`` if it lies on the scale (0 to :data:`MAX_INTENSITY_CM` cm of peak movement), else
    ValueError with one sentence."""
    if not np.isfinite(x) or not 0.0 <= x <= MAX_INTENSITY_CM:
        raise ValueError(f"intensity {unit.label}={x:g} is out of range: intensities are 0 to "
                         f"{MAX_INTENSITY_CM:g} (cm of peak movement)")
    return float(x)


def parse_units(specs: list[str]) -> list[tuple[Unit, float]]:
    """Unit specs (``["AU4=0.6", "AU15L=0.4"]``) -> [(unit, intensity)], each checked: known unit,
    side, intensity in range. Raises ValueError with one sentence."""
    out = []
    for spec in specs:
        unit, x = parse_unit(spec)
        out.append((unit, check_intensity(unit, x)))
    return out


def unit_contributions(displacement: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, float]:
    """The non-negative fit of a displacement on unit shapes (the columns of ``basis``, e.g.
    :func:`unit_basis`): each column's part of the fit (its weight times its norm, cm, so the
    columns' scale does not matter) and the cosine between the fit and the displacement."""
    from scipy.optimize import nnls

    d = np.asarray(displacement, dtype=float).ravel()
    weights, _ = nnls(basis, d)
    fit = basis @ weights
    denom = np.linalg.norm(fit) * np.linalg.norm(d)
    return weights * np.linalg.norm(basis, axis=0), float(fit @ d / denom) if denom > 0 else 0.0
