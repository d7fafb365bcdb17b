"""Facial-action photos on demand: FACS units warped onto real faces, with their ground truth.

One photo in, one photo out: MediaPipe's landmarks and dfe's similarity alignment
(:func:`dfe.extraction.expression.align_to_canonical`) put the person's face on the canonical face; the units'
displacement (:mod:`dfe.extraction.units`, canonical cm, the package's one intensity scale) is added there;
the displaced vertices go back into image pixels through the inverse of the similarity transform;
the photo is warped piecewise-affinely over the canonical mesh's triangles, with fixed anchors on
the image border so the background stays put (``cv2.remap``). Written per photo: the warped photo,
its ground truth (``<id>.truth.parquet``: per vertex the canonical displacement in cm and the pixel
displacement) and a JSON card (:class:`SynthCard`).

A 2D warp moves pixels in the image plane: it cannot show depth (a pucker's push forward), nor
texture (wrinkles, furrows, teeth, the mouth's inside), so jaw opening and nose wrinkles are weak.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from dfe.errors import DfeError
from dfe.extraction.expression import MAX_ALIGN_RMSE, Alignment, align_to_canonical, similarity_procrustes
from dfe.extraction.face import FaceLandmarker
from dfe.extraction.io import MediaError, media_kind, read_image
from dfe.extraction.mesh import CanonicalMesh, canonical_mesh
from dfe.extraction.units import Unit, displacement

log = logging.getLogger(__name__)

BORDER_ANCHORS_PER_SIDE = 8  # fixed points on each image side (corners included)
JPEG_QUALITY = 95
FOLD_CM2 = 0.01  # a triangle turned over by more than this area (1 mm^2 of face) is a fold
# The inner rim of the lips: triangles between them are the mouth's opening, not skin; lips pressed
# together may overlap there without folding the face.
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
SCALE_TEXT = ("intensity x = the unit's most-moved vertex moves x cm on the canonical face; a bilateral unit "
              "at x is both sides at x")


class SynthError(DfeError, ValueError):
    """A photo that cannot be synthesized; the message is one sentence naming it."""


# ---------------------------------------------------------------- pure maths

def canonical_to_image(points: np.ndarray, alignment: Alignment) -> np.ndarray:
    """Canonical-frame points (n, 3, cm) -> image space (pixels; x right, y up, z to the camera):
    the inverse of the similarity ``aligned = s R p + t`` of :func:`align_to_canonical`."""
    return ((np.asarray(points, dtype=np.float64) - alignment.translation) / alignment.scale) @ alignment.rotation


def image_to_pixels(points: np.ndarray) -> np.ndarray:
    """Image space (x right, y up) -> pixel coordinates (x right, y down), (n, 2)."""
    return np.stack([points[:, 0], -points[:, 1]], axis=1)


def landmark_pixels(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """MediaPipe's normalised landmarks -> pixel coordinates of the 468 mesh vertices, (468, 2)."""
    lm = np.asarray(landmarks, dtype=np.float64)[:468]
    return np.stack([lm[:, 0] * width, lm[:, 1] * height], axis=1)


def target_pixels(alignment: Alignment, d: np.ndarray) -> np.ndarray:
    """Where each mesh vertex goes in the photo when the face moves by ``d`` (468, 3, canonical cm)."""
    return image_to_pixels(canonical_to_image(alignment.mesh + d, alignment))


def alignable_part(d: np.ndarray, mesh: CanonicalMesh | None = None) -> np.ndarray:
    """What a similarity re-alignment leaves of a displacement: the canonical face moved by ``d``,
    aligned back onto the canonical face on the Procrustes basis points, minus the canonical face.
    This is what dfe's psi can show of ``d`` at best (the rest is the similarity part)."""
    mesh = mesh or canonical_mesh()
    moved = mesh.vertices + d
    w = np.zeros(len(moved))
    w[mesh.basis_ids] = 1.0
    s, rot, t = similarity_procrustes(moved, mesh.vertices, w)
    return s * moved @ rot.T + t - mesh.vertices


@lru_cache(maxsize=1)
def face_outline() -> np.ndarray:
    """Vertex ids of the canonical mesh's outer boundary (the face oval), in order around it."""
    tris = canonical_mesh().triangles
    edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    boundary = uniq[counts == 1]
    nxt: dict[int, list[int]] = {}
    for a, b in boundary:
        nxt.setdefault(int(a), []).append(int(b))
        nxt.setdefault(int(b), []).append(int(a))
    loop = [int(boundary[0, 0])]
    prev = -1
    while True:
        cur = loop[-1]
        step = next(v for v in nxt[cur] if v != prev)
        if step == loop[0]:
            return np.array(loop)
        prev = cur
        loop.append(step)


def border_anchors(width: int, height: int, per_side: int = BORDER_ANCHORS_PER_SIDE) -> np.ndarray:
    """Fixed points on the image border, (k, 2) pixels: corners and evenly spaced points between."""
    xs = np.linspace(0, width - 1, per_side)
    ys = np.linspace(0, height - 1, per_side)[1:-1]
    return np.concatenate([np.stack([xs, np.zeros_like(xs)], 1), np.stack([xs, np.full_like(xs, height - 1)], 1),
                           np.stack([np.zeros_like(ys), ys], 1), np.stack([np.full_like(ys, width - 1), ys], 1)])


@dataclass
class WarpMesh:
    """The triangles of one warp: the ring between the face oval and the image border, then the
    face mesh back to front; points are the 468 vertices, then the border anchors."""

    source: np.ndarray  # (n, 2) pixels in the photo
    target: np.ndarray  # (n, 2) pixels in the warped photo
    triangles: np.ndarray  # (T, 3) ids into the points, in drawing order
    facing: np.ndarray  # (T,) how squarely each triangle faces the camera in the photo (1 = square on; 0: exempt)

    def folded(self, min_area: float) -> np.ndarray:
        """Ids of triangles that face the camera in the photo (facing > 1/4) and are turned over in
        the warp by more than ``min_area`` px^2. Triangles edge-on or turned away in the photo (the
        side of the face) and the mouth's opening do not count."""
        a_src, a_dst = signed_areas(self.source, self.triangles), signed_areas(self.target, self.triangles)
        return np.flatnonzero((a_src > 0) & (self.facing > 0.25) & (a_dst < -min_area))


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Signed areas of triangles in pixel coordinates, positive when the corners run counter-
    clockwise on the screen (as the canonical mesh's triangles of a face seen from the front)."""
    p = points[triangles]
    u, v = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    return -0.5 * (u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0])  # y points down: minus for screen orientation


def warp_mesh(source_px: np.ndarray, target_px: np.ndarray, source_3d: np.ndarray, width: int, height: int) -> WarpMesh:
    """Triangles of the warp: a Delaunay ring from the face oval to fixed border anchors, then the
    canonical mesh's triangles far ones first, so the nearer face wins where a turned head overlaps
    itself. ``source_3d``: the vertices in image space (pixels, z to the camera), for depth and facing."""
    from matplotlib.path import Path as Polygon
    from scipy.spatial import Delaunay

    anchors = border_anchors(width, height)
    n = len(source_px)
    oval = face_outline()
    ring_points = np.concatenate([source_px[oval], anchors])
    ring = Delaunay(ring_points).simplices
    inside = Polygon(source_px[oval]).contains_points(ring_points[ring].mean(1))
    ids = np.concatenate([oval, n + np.arange(len(anchors))])
    ring = ids[ring[~inside]]
    points = np.concatenate([source_px, anchors])
    turned = signed_areas(points, ring) < 0
    ring[turned] = ring[turned][:, [0, 2, 1]]
    face = canonical_mesh().triangles
    opening = np.isin(face, INNER_LIPS).all(1)
    order = np.lexsort((source_3d[face, 2].mean(1), ~opening))  # the mouth's opening first, then far to near
    face, opening = face[order], opening[order]
    p = source_3d[face]
    normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    facing = np.where(opening, 0.0, normal[:, 2] / np.maximum(np.linalg.norm(normal, axis=1), 1e-12))
    return WarpMesh(points, np.concatenate([target_px, anchors]), np.concatenate([ring, face]),
                    np.concatenate([np.ones(len(ring)), facing]))


def warp_maps(mesh: WarpMesh, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps of a piecewise-affine warp: for every pixel of the warped photo, where it
    comes from in the photo (the triangle covering it in the warp, its affine map back)."""
    import cv2

    shift = 4
    label = np.full((height, width), -1, dtype=np.int32)
    dst = mesh.target[mesh.triangles]  # (T, 3, 2)
    src = mesh.source[mesh.triangles]
    fixed = np.round(dst * (1 << shift)).astype(np.int32)
    for k, tri in enumerate(fixed):
        cv2.fillConvexPoly(label, tri, k, lineType=cv2.LINE_8, shift=shift)
    homog = np.concatenate([dst, np.ones((len(dst), 3, 1))], axis=2)  # rows (x, y, 1) per corner
    ok = np.abs(np.linalg.det(homog)) > 1e-9
    affine = np.zeros((len(dst), 2, 3))
    affine[ok] = np.transpose(np.linalg.solve(homog[ok], src[ok]), (0, 2, 1))  # src = A @ (x, y, 1)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    lab = label.ravel()
    covered = (lab >= 0) & ok[np.maximum(lab, 0)]
    a = affine[np.maximum(lab, 0)]
    mx, my = xs.ravel().copy(), ys.ravel().copy()
    px, py = mx[covered], my[covered]
    ac = a[covered]
    mx[covered] = ac[:, 0, 0] * px + ac[:, 0, 1] * py + ac[:, 0, 2]
    my[covered] = ac[:, 1, 0] * px + ac[:, 1, 1] * py + ac[:, 1, 2]
    return mx.reshape(height, width).astype(np.float32), my.reshape(height, width).astype(np.float32)


def warp_image(image: np.ndarray, mesh: WarpMesh) -> np.ndarray:
    """The photo warped by ``mesh`` (bilinear; the border replicated)."""
    import cv2

    h, w = image.shape[:2]
    map_x, map_y = warp_maps(mesh, w, h)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# ---------------------------------------------------------------- one photo

@dataclass
class SynthFace:
    """What the warp needs of a photo's face: its landmarks and dfe's alignment."""

    landmarks: np.ndarray  # (478, 3) MediaPipe, normalised
    alignment: Alignment
    width: int
    height: int

    @property
    def pixels(self) -> np.ndarray:
        return landmark_pixels(self.landmarks, self.width, self.height)

    @property
    def px_per_cm(self) -> float:
        return 1.0 / self.alignment.scale


@dataclass
class SynthCard:
    """The JSON card of one synthesized photo."""

    photo: str  # file name of the warped photo
    truth: str  # file name of its ground truth (per-vertex displacement)
    source: str  # the real photo it was made from
    source_sha256: str
    units: list[dict] = field(default_factory=list)  # {"unit", "au", "side", "intensity"}
    peak_cm: float = 0.0  # largest vertex movement of the applied displacement (canonical cm)
    peak_px: float = 0.0  # largest vertex movement in the photo (pixels)
    px_per_cm: float = 0.0  # photo pixels per canonical cm (the alignment's scale)
    align_rmse: float = 0.0
    scale: str = SCALE_TEXT
    dfe_version: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Synthesis:
    """A warped photo with its ground truth, before anything is written."""

    image: np.ndarray  # BGR uint8, the photo's size
    displacement: np.ndarray  # (468, 3) canonical cm
    source_px: np.ndarray  # (468, 2)
    target_px: np.ndarray  # (468, 2)
    face: SynthFace

    def truth_table(self) -> pd.DataFrame:
        d, src, move = self.displacement, self.source_px, self.target_px - self.source_px
        return pd.DataFrame({"vertex": np.arange(len(d)), "dx_cm": d[:, 0], "dy_cm": d[:, 1], "dz_cm": d[:, 2],
                             "x_px": src[:, 0], "y_px": src[:, 1], "dx_px": move[:, 0], "dy_px": move[:, 1]})


def units_text(units: list[tuple[Unit, float]]) -> str:
    return " + ".join(f"{u.label}={x:g}" for u, x in units) or "d=0"


def synthesize_face(image: np.ndarray, face: SynthFace, units: list[tuple[Unit, float]], name: str = "the photo") -> Synthesis:
    """Warp ``image`` (BGR) by the units' displacement on ``face``. Raises SynthError when the warp
    would fold the face mesh."""
    d = displacement(units)
    src = target_pixels(face.alignment, np.zeros_like(d))  # the landmarks, through the same inverse
    dst = target_pixels(face.alignment, d)
    mesh = warp_mesh(src, dst, canonical_to_image(face.alignment.mesh, face.alignment), face.width, face.height)
    folded = mesh.folded(FOLD_CM2 * face.px_per_cm ** 2)
    if len(folded):
        raise SynthError(f"{units_text(units)} would fold the face mesh of {name} ({len(folded)} triangles flip "
                         "over): lower the intensity")
    return Synthesis(warp_image(image, mesh), d, src, dst, face)


_STATE: dict = {}  # per process: one IMAGE-mode landmarker


def _landmarker():
    if "landmarker" not in _STATE:
        from multiprocessing import util


        _STATE["landmarker"] = FaceLandmarker("image", 1)
        util.Finalize(None, close_landmarker, exitpriority=10)
    return _STATE["landmarker"]


def close_landmarker() -> None:
    lm = _STATE.pop("landmarker", None)
    if lm is not None:
        lm.close()


def find_face(rgb: np.ndarray, name: str = "the photo", landmarker=None) -> SynthFace:
    """The largest face of an RGB photo, its landmarks and alignment. Raises SynthError."""
    h, w = rgb.shape[:2]
    found = (landmarker or _landmarker()).detect(rgb)
    if not found:
        raise SynthError(f"no face found in {name}")
    align = align_to_canonical(found[0].landmarks, w, h)
    if align.rmse > MAX_ALIGN_RMSE:
        raise SynthError(f"no human face found in {name} (the detection fits the face model at {align.rmse:.2f} cm)")
    return SynthFace(np.asarray(found[0].landmarks, dtype=np.float64), align, w, h)


@lru_cache(maxsize=256)
def _photo_face(path: str, size: int, mtime_ns: int) -> tuple[np.ndarray, SynthFace]:
    """A photo's pixels and face, once per process (a corpus warps each photo many times)."""
    name = Path(path).name
    try:
        frame = read_image(path, max_side=1 << 30)
    except (MediaError, OSError) as e:
        raise SynthError(f"cannot read {name} ({e})") from None
    return frame.rgb, find_face(frame.rgb, name)


def load_photo(path: str | Path) -> tuple[np.ndarray, SynthFace]:
    """(RGB pixels, face) of a photo. Raises SynthError with one sentence naming it."""
    path = Path(path)
    if media_kind(path) != "image":
        raise SynthError(f"{path.name} is not a photo: dfe synth warps images")
    st = path.stat()
    rgb, face = _photo_face(str(path.resolve()), st.st_size, st.st_mtime_ns)
    return rgb, face










