"""Eye gaze from MediaPipe's iris and eyelid landmarks, in OpenFace's conventions.

Per eye: the iris centre (landmark 468 / 473) is taken into the head's frame by the same similarity
alignment as the mesh (:func:`dfe.extraction.expression.similarity_procrustes` on the 33 basis points), and its
offset from the midpoint of the eye corners, minus the offset of an eye looking straight ahead
(:data:`REST_OFFSET`, measured on Canada photos by ``bench/action_units.py``), is read
as a rotation of an eyeball of radius :data:`EYEBALL_RADIUS` cm: yaw = asin(dx / r), pitch =
asin(dy / r). That direction is turned into camera coordinates with the head rotation.

OpenFace conventions: camera coordinates x right, y down, z away from the camera; unit gaze vectors
per eye, eye 0 the leftmost in the image (the person's right eye), eye 1 the other; looking at the
camera is about (0, 0, -1); ``gaze_angle_x = atan2(g_x, -g_z)``, ``gaze_angle_y = atan2(g_y, -g_z)``
of the two vectors' mean, radians (looking to the image's right: x > 0; looking up: y < 0).
An eye whose lids are closer than :data:`CLOSED_EYE_CM` has no gaze (NaN); the angles then come
from the other eye. The eyeLook* blendshapes are not used (they are the check, bench/action_units.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from dfe.extraction.mesh import canonical_mesh
from dfe.table import landmarks_array

# per eye (OpenFace's eye 0 = the person's right eye = MediaPipe's right iris 468)
IRIS = (468, 473)
CORNERS = ((33, 133), (362, 263))
LIDS = ((159, 145), (386, 374))  # upper, lower lid midpoints
EYEBALL_RADIUS = 1.2  # cm, iris centre to the eyeball's centre (adult eye, ~12 mm)
CLOSED_EYE_CM = 0.12  # lid gap (canonical cm) under which an eye counts as closed
# Iris offset (x, y cm, head frame) from the corner midpoint when the eye looks straight ahead:
# median of the 40 Canada photos (frontal, looking into the camera).
REST_OFFSET = np.array([[-0.137, 0.239], [0.092, 0.237]])


@dataclass
class Gaze:
    """Gaze of n frames: per-eye unit vectors and OpenFace's angles (NaN where no face / eyes closed)."""

    vectors: np.ndarray  # (n, 2, 3) camera coordinates, OpenFace axes
    angles: np.ndarray  # (n, 2) gaze_angle_x, gaze_angle_y, radians
    eye_in_head: np.ndarray  # (n, 2) yaw, pitch of the eyes relative to the head (mean of open eyes), radians
    iris_offsets: np.ndarray  # (n, 2, 2) raw iris offsets from the corner midpoint, head frame cm

    def columns(self) -> dict[str, np.ndarray]:
        v = self.vectors
        return {"gaze_0_x": v[:, 0, 0], "gaze_0_y": v[:, 0, 1], "gaze_0_z": v[:, 0, 2],
                "gaze_1_x": v[:, 1, 0], "gaze_1_y": v[:, 1, 1], "gaze_1_z": v[:, 1, 2],
                "gaze_angle_x": self.angles[:, 0], "gaze_angle_y": self.angles[:, 1]}


def _aligned(landmarks: np.ndarray, aspect: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All 478 landmarks of n frames in the head frame (canonical cm) and the rotations image ->
    head: the similarity Procrustes of :func:`dfe.extraction.expression.similarity_procrustes` on the 33 basis
    points, batched over frames."""
    mesh = canonical_mesh()
    a = aspect[:, None]
    pts = np.stack([landmarks[..., 0] * a, -landmarks[..., 1], -landmarks[..., 2] * a], -1)
    src, dst = pts[:, mesh.basis_ids], mesh.vertices[mesh.basis_ids]
    mu_s, mu_d = src.mean(1), dst.mean(0)
    sc, dc = src - mu_s[:, None], dst - mu_d
    cov = np.einsum("pi,npj->nij", dc, sc) / len(dst)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones((len(pts), 3))
    d[:, 2] = np.where(np.linalg.det(u @ vt) < 0, -1.0, 1.0)
    rot = u @ (d[:, :, None] * vt)
    scale = (sig * d).sum(1) / (sc**2).sum((1, 2)) * len(dst)
    t = mu_d - scale[:, None] * np.einsum("nij,nj->ni", rot, mu_s)
    return scale[:, None, None] * pts @ rot.transpose(0, 2, 1) + t[:, None], rot


def gaze_from_landmarks(landmarks: np.ndarray, aspect: float | np.ndarray = 1.0,
                        rest: np.ndarray | None = None) -> Gaze:
    """Gaze of (n, 478, 3) normalised MediaPipe landmarks; ``aspect`` = image width / height (one
    value or one per frame). ``rest``: the straight-ahead iris offsets (default :data:`REST_OFFSET`)."""
    lms = np.asarray(landmarks, dtype=np.float64).reshape(-1, 478, 3)
    n = len(lms)
    aspect = np.broadcast_to(np.asarray(aspect, dtype=np.float64), (n,))
    rest = REST_OFFSET if rest is None else np.asarray(rest)
    vectors = np.full((n, 2, 3), np.nan)
    offsets = np.full((n, 2, 2), np.nan)
    yaw_pitch = np.full((n, 2, 2), np.nan)
    ok = np.isfinite(lms).all((1, 2)) & np.isfinite(aspect)
    if ok.any():
        pts, rot = _aligned(lms[ok], aspect[ok])
        for eye in range(2):
            mid = pts[:, list(CORNERS[eye])].mean(1)
            off = (pts[:, IRIS[eye]] - mid)[:, :2]
            upper, lower = LIDS[eye]
            is_open = pts[:, upper, 1] - pts[:, lower, 1] >= CLOSED_EYE_CM
            dx, dy = np.clip((off - rest[eye]) / EYEBALL_RADIUS, -0.95, 0.95).T
            yaw, pitch = np.arcsin(dx), np.arcsin(dy)
            g_head = np.stack([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)], 1)
            g_img = np.einsum("nji,nj->ni", rot, g_head)  # R^T g: image axes, x right, y up, z to the camera
            g_img[~is_open] = np.nan
            offsets[ok, eye] = off
            vectors[ok, eye] = g_img * np.array([1.0, -1.0, -1.0])
            yaw_pitch[ok, eye] = np.where(is_open[:, None], np.stack([yaw, pitch], 1), np.nan)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # frames with no open eye: NaN
        mean = np.nanmean(vectors, 1) if n else np.zeros((0, 3))
        head = np.nanmean(yaw_pitch, 1) if n else np.zeros((0, 2))
        ang = np.stack([np.arctan2(mean[:, 0], -mean[:, 2]), np.arctan2(mean[:, 1], -mean[:, 2])], 1)
    return Gaze(vectors, ang, head, offsets)


def image_size(bbox_w: np.ndarray, bbox_h: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image width and height (pixels) per frame, recovered from the face box (pixels) and the
    normalised landmarks (n, 478, 3) whose extent that box is (NaN where there is no face)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(len(bbox_w), -1, 3)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        width = np.asarray(bbox_w, float) / (np.nanmax(lm[:, :, 0], 1) - np.nanmin(lm[:, :, 0], 1))
        height = np.asarray(bbox_h, float) / (np.nanmax(lm[:, :, 1], 1) - np.nanmin(lm[:, :, 1], 1))
    return width, height


def table_image_size(df) -> tuple[np.ndarray, np.ndarray]:
    """Image width and height per row of a per-frame table with landmarks (see :func:`image_size`)."""
    return image_size(df["bbox_w"].to_numpy(float), df["bbox_h"].to_numpy(float), landmarks_array(df))
