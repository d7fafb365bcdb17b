"""Who vs what: a face model that separates a person's neutral face (identity) from the expression.

psi must hold the expression only. With a neutral reference (a neutral photo, or a video track's
calm frames) identity is removed by subtraction; without one, dfe fits this model: in MediaPipe's
canonical space (cm) an aligned mesh ``x`` (1404 values) is

    x = mean + U^T a + e(blendshapes) + r

- ``mean + U^T a``: the person's neutral face; ``U`` (k, 1404) are the principal directions of 80
  real neutral faces (Canada + London sets) seen through MediaPipe, ``a ~ N(0, diag(identity_var))``
  the person's identity coefficients (written to the table as ``id_0 .. id_{k-1}``);
- ``e(b) = b @ rig``: the expression the 52 MediaPipe blendshape scores predict (a ridge map fitted
  on real expression displacements with known neutrals: London smiles, the shared video tracks, and
  neutral photos with displacement 0);
- ``r ~ N(0, expression_factor^T expression_factor + noise^2 I)``: what the rig misses, with the
  covariance of real expression displacements, so the identity fit does not absorb expressions.

The identity fit is the posterior mean (MAP) of ``a`` given the frames of one person (one photo, a
video track, or several photos of one person); the neutral is ``mean + U^T a`` and
psi = x - neutral. Everything is linear algebra on (k x k) matrices per fit: microseconds a face.

Built by ``scripts/build_face_model.py`` with :func:`build_face_model`; ships as
``dfe/data/face_model.npz`` (credits in its metadata and the README's Credits).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from dfe.errors import DfeError
from dfe.extraction.expression import calm_frames, estimate_neutral, realigned
from dfe.extraction.face import BLENDSHAPE_NAMES
from dfe.extraction.mesh import N_VERTICES, canonical_mesh
from dfe.extraction.units import side_units, unit_shape

DIM = N_VERTICES * 3
IDENTITY_MODES = ("auto", "model", "track", "canonical")
DEFAULT_NOISE = 0.1  # cm: landmark noise per coordinate
MAX_EFFECTIVE_FRAMES = 20  # frames of one track are not independent: cap their weight in the fit
DATA_FILE = Path(__file__).parents[1] / "data" / "face_model.npz"


class FaceModelError(DfeError, RuntimeError):
    """A face model file is missing, damaged or of another layout."""


def rig_inputs(blendshapes: np.ndarray) -> np.ndarray:
    """Blendshape scores the rig reads: ``_neutral`` and gaze (eyeLook*) zeroed, since neither
    deforms the face. (n, 52) float64."""
    b = np.atleast_2d(np.asarray(blendshapes, dtype=np.float64)).copy()
    b[:, [i for i, n in enumerate(BLENDSHAPE_NAMES) if i == 0 or n.startswith("eyeLook")]] = 0.0
    return np.nan_to_num(b)


@dataclass
class IdentityFit:
    """The neutral face of one person (one photo, a track, or a group of photos)."""

    neutral: np.ndarray  # (468, 3) canonical cm
    coefficients: np.ndarray  # (k,) identity coefficients a
    frames: int  # frames that went into the fit


@dataclass(frozen=True)
class FaceModel:
    """Identity + expression model in MediaPipe's canonical space (see the module docstring)."""

    mean: np.ndarray  # (1404,)
    identity_basis: np.ndarray  # (k, 1404), orthonormal rows
    identity_var: np.ndarray  # (k,) cm^2
    expression_factor: np.ndarray  # (r, 1404): expression covariance = F^T F
    rig: np.ndarray  # (52, 1404)
    noise: float = DEFAULT_NOISE
    meta: dict = field(default_factory=dict)

    @property
    def psi_version(self) -> int:
        """The psi version this model makes (:data:`dfe.extraction.expression.PSI_VERSIONS`); 1 when unrecorded."""
        return int(self.meta.get("psi_version", 1))

    @property
    def anchors(self) -> str:
        """The alignment's anchor scheme the model was built with (``basis`` when unrecorded)."""
        return str(self.meta.get("anchors", "basis"))

    @property
    def n_identity(self) -> int:
        return len(self.identity_var)

    def expected_expression(self, blendshapes: np.ndarray) -> np.ndarray:
        """The displacement (n, 1404) the rig predicts from blendshape scores: a rig-only psi."""
        return rig_inputs(blendshapes) @ self.rig

    @property
    def _gain(self) -> tuple[np.ndarray, np.ndarray]:
        """G = U S0^-1 and H = G U^T, with S0 = F^T F + noise^2 I inverted by Woodbury."""
        cached = self.__dict__.get("_gain_cache")
        if cached is None:
            s2 = self.noise**2
            u, f = self.identity_basis.astype(np.float64), self.expression_factor.astype(np.float64)
            inner = np.linalg.solve(s2 * np.eye(len(f)) + f @ f.T, f)  # (r, 1404)
            g = (u - (u @ f.T) @ inner) / s2
            cached = (g, g @ u.T)
            object.__setattr__(self, "_gain_cache", cached)
        return cached

    def fit(self, aligned: np.ndarray, blendshapes: np.ndarray,
            max_effective_frames: int = MAX_EFFECTIVE_FRAMES) -> IdentityFit:
        """MAP identity of one person from n >= 1 aligned meshes (n, 468, 3) and their blendshapes.

        The frames share one identity; what the rig does not explain counts as expression noise,
        weighted as ``min(n, max_effective_frames)`` independent frames.
        """
        x = np.asarray(aligned, dtype=np.float64).reshape(-1, DIM)
        if len(x) == 0:
            raise ValueError("an identity fit needs at least one frame")
        y = (x - self.expected_expression(blendshapes) - self.mean).mean(0)
        n = float(min(len(x), max_effective_frames))
        g, h = self._gain
        a = np.linalg.solve(np.diag(1.0 / self.identity_var) + n * h, n * (g @ y))
        neutral = self.mean + a @ self.identity_basis
        return IdentityFit(neutral.reshape(N_VERTICES, 3), a, len(x))

    # ------------------------------------------------------------------ file
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with open(path, "wb") as fh:
            np.savez_compressed(
                fh, mean=self.mean.astype(np.float32), identity_basis=self.identity_basis.astype(np.float32),
                identity_var=self.identity_var.astype(np.float32),
                expression_factor=self.expression_factor.astype(np.float32), rig=self.rig.astype(np.float32),
                noise=np.float32(self.noise), meta=np.array(json.dumps(self.meta)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FaceModel":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                model = cls(z["mean"], z["identity_basis"], z["identity_var"], z["expression_factor"], z["rig"],
                            float(z["noise"]), json.loads(str(z["meta"])))
        except FileNotFoundError:
            raise FaceModelError(f"{path}: face model file not found") from None
        except Exception as e:  # noqa: BLE001 - any damage is one sentence
            raise FaceModelError(f"{path}: not a readable dfe face model ({type(e).__name__}: {e})") from None
        k = len(model.identity_var)
        if (model.mean.shape != (DIM,) or model.identity_basis.shape != (k, DIM)
                or model.expression_factor.shape[1:] != (DIM,) or model.rig.shape != (52, DIM)):
            raise FaceModelError(f"{path}: face model arrays have the wrong shapes for the 468-vertex mesh")
        if not all(np.isfinite(a).all() for a in (model.mean, model.identity_basis, model.identity_var, model.rig)):
            raise FaceModelError(f"{path}: face model holds NaN or infinite values")
        return model


@lru_cache(maxsize=4)
def load_face_model(path: str | None = None) -> FaceModel:
    """The bundled face model (``dfe/data/face_model.npz``), or the file at ``path``."""
    return FaceModel.load(path or DATA_FILE)


def face_model_provenance(ids: list[str], path: str | None = None) -> dict:
    """Whether the face model that removed identity may have seen the tested inputs (``ids``:
    table ids), in one statement for reports, with the sets and videos its metadata records."""
    model = load_face_model(path)
    meta = model.meta or {}
    named = sorted(set(map(str, ids)) & {Path(v).stem for v in meta.get("videos", [])})
    which = f"your face model {path}" if path else "the bundled face model"
    sources = meta.get("sources", [])
    statement = (f"Identity was removed with {which} ({meta.get('neutral_faces', '?')} neutral faces from: "
                 + ("; ".join(s.split(':')[0] for s in sources) or "sources not recorded") + "). "
                 "It records its source sets, not its people, so dfe cannot rule out that it saw the tested "
                 "people: if the media come from those sets (the shared London photos do), it did"
                 + (f"; {len(named)} inputs share a name with its recorded videos ({', '.join(named[:5])})" if named else "")
                 + ". Build one without them (scripts/build_face_model.py, --face-model) for a strict hold-out.")
    return {"file": str(path or DATA_FILE), "sources": sources, "inputs_named_in_it": named, "statement": statement}


# ---------------------------------------------------------------------- building the model

def unit_expression_shapes(anchors: str = "basis", leave_out=()) -> np.ndarray:
    """The FACS units' registered shapes (ICT FaceKit, :mod:`dfe.extraction.units`; each side of a bilateral
    unit alone) at 1 cm peak, as psi can show them after a similarity alignment on ``anchors``:
    (U, 1404), the explicit expression subspace. ``leave_out``: units (e.g. ``{"AU4"}``) left out."""
    return np.array([realigned(unit_shape(u), anchors).ravel() for u in side_units() if u.au not in set(leave_out)])



def fit_expression_rig(displacements: np.ndarray, blendshapes: np.ndarray, ridge: float = 1.0) -> np.ndarray:
    """Ridge map blendshape scores -> displacement (52, 1404), least squares over the samples."""
    b = rig_inputs(blendshapes)
    y = np.asarray(displacements, dtype=np.float64).reshape(len(b), DIM)
    return np.linalg.solve(b.T @ b + ridge * np.eye(b.shape[1]), b.T @ y)


def build_face_model(neutral_faces: np.ndarray, neutral_blendshapes: np.ndarray,
                     expressions: np.ndarray, expression_blendshapes: np.ndarray,
                     noise: float = DEFAULT_NOISE, ridge: float = 1.0, n_identity: int | None = None,
                     n_expression_factors: int = 128, meta: dict | None = None,
                     synth_expressions: np.ndarray | None = None, synth_blendshapes: np.ndarray | None = None,
                     synth_controls: np.ndarray | None = None, synth_weight: float = 1.0,
                     unit_shapes: np.ndarray | None = None, unit_sd: float = 0.0) -> FaceModel:
    """Build the model from real MediaPipe data, all aligned to the canonical face (cm):

    - ``neutral_faces`` (n, 468, 3): one neutral face per person -> mean and identity directions;
    - ``expressions`` (m, 468, 3): expression displacements with a known neutral (expressive frame
      minus the same person's neutral) and their blendshapes -> the rig and the expression
      covariance. Neutral faces enter the rig as displacement 0 at their own blendshapes;
    - ``synth_expressions`` (s, 468, 3) and ``synth_blendshapes``: ``dfe synth`` photos of the
      neutral faces as MediaPipe sees them (warped photo minus the real photo), into the rig and,
      weighted ``synth_weight``, into the expression covariance; ``synth_controls`` (blendshapes of
      the d = 0 photos) enter the rig as displacement 0;
    - ``unit_shapes`` (U, 1404): an explicit expression subspace (one row per unit at 1 cm) with
      an independent prior of ``unit_sd`` cm per unit, added to the expression covariance.
    """
    x = np.asarray(neutral_faces, dtype=np.float64).reshape(len(neutral_faces), DIM)
    mean = x.mean(0)
    _, sv, vt = np.linalg.svd(x - mean, full_matrices=False)
    var = sv**2 / max(len(x) - 1, 1)
    keep = var > 1e-10 * var[0]
    if n_identity is not None:
        keep[n_identity:] = False
    e = np.asarray(expressions, dtype=np.float64).reshape(len(expressions), DIM)
    s = (np.zeros((0, DIM)) if synth_expressions is None
         else np.asarray(synth_expressions, dtype=np.float64).reshape(len(synth_expressions), DIM))
    s_bs = np.zeros((0, 52)) if synth_blendshapes is None else np.asarray(synth_blendshapes)
    c_bs = np.zeros((0, 52)) if synth_controls is None else np.asarray(synth_controls)
    rig = fit_expression_rig(np.vstack([e, s, np.zeros_like(x), np.zeros((len(c_bs), DIM))]),
                  np.vstack([np.asarray(expression_blendshapes), s_bs, np.asarray(neutral_blendshapes), c_bs]), ridge)
    missed = e - rig_inputs(expression_blendshapes) @ rig
    # expression covariance: real displacements and what the rig misses of them, as a factor F
    blocks = [np.vstack([e, missed]) / np.sqrt(len(e))]
    if len(s):
        s_missed = s - rig_inputs(s_bs) @ rig
        blocks.append(np.sqrt(synth_weight) * np.vstack([s, s_missed]) / np.sqrt(len(s)))
    _, esv, evt = np.linalg.svd(np.vstack(blocks), full_matrices=False)
    factor = esv[:n_expression_factors, None] * evt[:n_expression_factors]
    if unit_shapes is not None and unit_sd > 0:
        factor = np.vstack([factor, unit_sd * np.asarray(unit_shapes, dtype=np.float64).reshape(-1, DIM)])
    info = {"neutral_faces": len(x), "expression_samples": len(e), "synth_samples": len(s), "ridge": ridge,
            "synth_weight": synth_weight, "unit_shapes": 0 if unit_shapes is None else len(unit_shapes),
            "unit_sd_cm": unit_sd, "expression_factors": len(factor)}
    return FaceModel(mean, vt[keep], var[keep], factor, rig, noise, {**info, **(meta or {})})


# ---------------------------------------------------------------------- choosing a track's neutral

@dataclass
class Neutral:
    """The neutral face psi is measured from, for one face track (or one photo)."""

    mesh: np.ndarray  # (468, 3) canonical cm
    source: str  # image:<file> | track | model | track+model | person+model | canonical
    frames: int  # frames that went into it (0: none, the canonical face)
    coefficients: np.ndarray  # (k,) identity coefficients of the model fit (always computed)


def track_neutral(aligned: np.ndarray, blendshapes: np.ndarray, video: bool, mode: str = "auto",
                  model: FaceModel | None = None, reference: np.ndarray | None = None,
                  reference_name: str | None = None, person: IdentityFit | None = None) -> Neutral:
    """Pick and compute the neutral of one track (a video's face track, or a photo's face).

    A reference neutral photo always wins. ``auto``: a person's pooled fit if given, else a model
    fit on the track's calm frames (video) or on the photo itself. ``model``: a model fit on every
    frame. ``track``: dfe 0.1 (a video track's calm frames; photos: the canonical face).
    ``canonical``: MediaPipe's canonical face.
    """
    if mode not in IDENTITY_MODES:
        raise ValueError(f"identity mode must be one of {', '.join(IDENTITY_MODES)}, not {mode!r}")
    model = model or load_face_model()
    calm = calm_frames(blendshapes) if video else np.arange(len(aligned))
    fit = person or model.fit(aligned[calm] if mode != "model" else aligned,
                              blendshapes[calm] if mode != "model" else blendshapes)
    if reference is not None:
        return Neutral(np.asarray(reference), f"image:{reference_name}", 1, fit.coefficients)
    if mode == "canonical" or (mode == "track" and not video):
        return Neutral(canonical_mesh().vertices, "canonical", 0, fit.coefficients)
    if mode == "track":
        mesh, k = estimate_neutral(aligned, blendshapes)
        return Neutral(mesh, "track", k, fit.coefficients)
    if person is not None:
        return Neutral(person.neutral, "person+model", person.frames, person.coefficients)
    source = "track+model" if video and mode == "auto" else "model"
    return Neutral(fit.neutral, source, fit.frames, fit.coefficients)
