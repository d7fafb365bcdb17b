"""From landmarks to the expression vector psi: remove head pose, then identity.

- :func:`align_to_canonical`: weighted similarity Procrustes of the 468 mesh landmarks onto
  MediaPipe's canonical face (cm), giving the aligned mesh and the head pose.
- :func:`estimate_neutral`: a face track's neutral mesh from its least expressive frames.
- psi = aligned mesh - neutral mesh, flattened vertex-major (x0, y0, z0, x1, ...), in cm.

Other psi kinds (``blendshapes``; ``flame`` and ``flame+eyelids`` from :mod:`dfe.extraction.flame`) are
named here too, so every later stage sees one (n, D) float array and a ``psi_kind`` name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfe.extraction.face import BLENDSHAPE_NAMES
from dfe.extraction.mesh import N_VERTICES, CanonicalMesh, canonical_mesh

PSI_KINDS = {"geometry": N_VERTICES * 3, "blendshapes": 52, "flame": 53, "flame+eyelids": 55}
NEUTRAL_SHARE = 0.10  # share of a track's frames (least blendshape activity) averaged into its neutral
NEUTRAL_MIN_FRAMES = 3
MAX_ALIGN_RMSE = 1.2  # cm on the anchors: a detection that fits the canonical face worse is not a human face
# How geometry psi is made, recorded in every table (``psi_version`` column) and model file, so that
# psi of two makings is never silently mixed. Tables and models without a record are version 1.
PSI_VERSION = 2
PSI_VERSIONS = {
    1: "dfe 0.3 and earlier: 33 Procrustes basis points, a face model whose expression side saw smiles and talking",
    2: "issue 22 (after dfe 0.3.0): the same 33 anchors, a face model whose expression side also learned every FACS unit (dfe synth)",
}


@dataclass
class Alignment:
    """The result of aligning one face to the canonical mesh."""

    mesh: np.ndarray  # (468, 3) aligned vertices, canonical cm
    rotation: np.ndarray  # (3, 3) R: image space -> canonical
    scale: float  # canonical cm per image pixel
    translation: np.ndarray  # (3,)
    rmse: float  # cm, on the anchor points

    @property
    def pose_angles(self) -> tuple[float, float, float]:
        """Head yaw, pitch, roll in degrees (head rotation relative to the camera)."""
        from scipy.spatial.transform import Rotation

        yaw, pitch, roll = Rotation.from_matrix(self.rotation.T).as_euler("YXZ", degrees=True)
        return float(yaw), float(pitch), float(roll)


def landmarks_to_image_space(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised MediaPipe landmarks -> pixel units, right-handed like the canonical face
    (x right, y up, z towards the camera): (x*W, -y*H, -z*W)."""
    lm = np.asarray(landmarks, dtype=np.float64)[:N_VERTICES]
    return np.stack([lm[:, 0] * width, -lm[:, 1] * height, -lm[:, 2] * width], axis=1)


def similarity_procrustes(src: np.ndarray, dst: np.ndarray, weights: np.ndarray):
    """Weighted Umeyama: (s, R, t) minimising sum w |s R src + t - dst|^2."""
    w = weights / weights.sum()
    mu_s, mu_d = w @ src, w @ dst
    sc, dc = src - mu_s, dst - mu_d
    cov = (dc * w[:, None]).T @ sc
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag(d) @ vt
    var_s = float(w @ (sc**2).sum(1))
    s = float((sig * d).sum() / var_s)
    t = mu_d - s * rot @ mu_s
    return s, rot, t


# Procrustes basis points that move with facial actions: cheeks (under the eyes, beside the nose and
# the mouth: AU6, AU7, AU9, AU12), the nose's wings (AU9, AU11) and the jaw's corner (AU26-30).
MOVING_ANCHORS = (117, 119, 121, 143, 147, 205, 346, 348, 350, 372, 376, 425, 129, 358, 198, 420, 136, 365)
# The points that move least over ICT FaceKit's unit shapes: the side of the face by the ears, the
# eye corners, the nose's bridge and tip.
SKULL_ANCHORS = (127, 356, 234, 454, 162, 389, 132, 361, 33, 263, 133, 362, 6, 197, 195, 5, 4)
ANCHOR_SCHEMES = ("basis", "rigid", "skull", "mediapipe", "robust")


def anchor_weights(mesh: CanonicalMesh, scheme: str = "basis") -> np.ndarray:
    """Per-vertex weights for the rigid fit.

    ``basis`` (default): MediaPipe's 33 Procrustes basis points, equally weighted. ``rigid``: the
    33 less those on moving regions (:data:`MOVING_ANCHORS`: cheeks, the nose's wings, the jaw's
    corner; 15 left: forehead, eye corners, nose bridge and tip, the side of the face). ``skull``:
    :data:`SKULL_ANCHORS`. ``mediapipe``: the 33 with MediaPipe's own weights. ``robust``:
    MediaPipe's weights plus the rest of the face with small weights, re-weighted per frame by
    residual. Why ``basis`` is the default: docs/measurements.md, "Rigid anchors" (measured by
    ``bench/expressions.py``).
    """
    w = np.zeros(N_VERTICES)
    if scheme in ("basis", "rigid"):
        w[mesh.basis_ids] = 1.0
        if scheme == "rigid":
            w[list(MOVING_ANCHORS)] = 0.0
        return w
    if scheme == "skull":
        w[list(SKULL_ANCHORS)] = 1.0
        return w
    w[mesh.basis_ids] = mesh.basis_weights
    if scheme == "mediapipe":
        return w
    if scheme == "robust":
        return w + 0.002
    raise ValueError(f"anchor scheme must be one of {', '.join(ANCHOR_SCHEMES)}, not {scheme!r}")


def realigned(displacement: np.ndarray, scheme: str = "basis", mesh: CanonicalMesh | None = None) -> np.ndarray:
    """What a similarity re-alignment on ``scheme``'s anchors leaves of a (468, 3) displacement:
    the canonical face moved by it, aligned back onto the canonical face, minus the canonical face
    (the most psi can show of it with perfect landmarks)."""
    mesh = mesh or canonical_mesh()
    moved = mesh.vertices + np.asarray(displacement, dtype=np.float64).reshape(N_VERTICES, 3)
    s, rot, t = similarity_procrustes(moved, mesh.vertices, anchor_weights(mesh, scheme))
    return s * moved @ rot.T + t - mesh.vertices


def align_to_canonical(landmarks: np.ndarray, width: int, height: int,
                       mesh: CanonicalMesh | None = None, scheme: str = "basis",
                       iterations: int = 3) -> Alignment:
    """Remove head pose: similarity transform of the observed mesh onto the canonical face."""
    mesh = mesh or canonical_mesh()
    pts = landmarks_to_image_space(landmarks, width, height)
    base = anchor_weights(mesh, scheme)
    w = base.copy()
    for _ in range(iterations if scheme == "robust" else 1):
        s, rot, t = similarity_procrustes(pts, mesh.vertices, w)
        aligned = s * pts @ rot.T + t
        resid = np.linalg.norm(aligned - mesh.vertices, axis=1)
        # Geman-McClure style down-weighting of vertices that sit far from the canonical face
        c = max(np.median(resid[base > 0]), 1e-3)
        w = base / (1.0 + (resid / c) ** 2)
    anchors = mesh.basis_ids
    rmse = float(np.sqrt(np.mean(np.sum((aligned[anchors] - mesh.vertices[anchors]) ** 2, 1))))
    return Alignment(aligned, rot, s, t, rmse)


def blendshape_activity(blendshapes: np.ndarray) -> np.ndarray:
    """Total expression activity per frame: sum of the 51 non-neutral blendshape scores,
    leaving out gaze (eyeLook*) which is not facial expression."""
    keep = [i for i, n in enumerate(BLENDSHAPE_NAMES) if i > 0 and not n.startswith("eyeLook")]
    return np.asarray(blendshapes)[:, keep].sum(1)


def calm_frames(blendshapes: np.ndarray, share: float = NEUTRAL_SHARE,
                min_frames: int = NEUTRAL_MIN_FRAMES) -> np.ndarray:
    """Indices of a track's least expressive frames (lowest :func:`blendshape_activity`, ties in
    frame order): ``share`` of its frames, at least ``min_frames`` (every frame when it has fewer)."""
    n = len(blendshapes)
    k = min(n, max(min_frames, int(np.ceil(share * n))))
    return np.argsort(blendshape_activity(blendshapes), kind="stable")[:k]


def estimate_neutral(aligned: np.ndarray, blendshapes: np.ndarray,
                     share: float = NEUTRAL_SHARE, min_frames: int = NEUTRAL_MIN_FRAMES) -> tuple[np.ndarray, int]:
    """Neutral mesh of one face track: median aligned mesh of its :func:`calm_frames`.

    Returns the (468, 3) mesh and how many frames went into it.
    """
    calm = calm_frames(blendshapes, share, min_frames)
    return np.median(aligned[calm], axis=0), len(calm)


def geometry_psi(aligned: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """psi = aligned - neutral, flattened vertex-major: (n, 1404) float32 in cm."""
    return (np.asarray(aligned) - neutral).reshape(len(aligned), -1).astype(np.float32)


def psi_norms(psi: np.ndarray) -> np.ndarray:
    """Per-vertex displacement magnitude (n, 468) of geometry psi."""
    return np.linalg.norm(np.asarray(psi).reshape(len(psi), -1, 3), axis=2)
