"""Face landmarks, blendshapes and head pose from MediaPipe's Face Landmarker.

The model file ``face_landmarker.task`` (MediaPipe, Apache-2.0; licence and NOTICE beside it)
ships inside dfe's own package data; its SHA-256 is checked at load.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from dfe.errors import DfeError
from dfe.extraction.io import quiet_native
from dfe.table import BLENDSHAPE_NAMES

log = logging.getLogger(__name__)

MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"



class ModelFileError(DfeError, RuntimeError):
    """The landmarker model file is missing or not the expected one."""


def default_model_path() -> Path:
    """Path of the bundled ``face_landmarker.task`` (dfe/data)."""
    return Path(__file__).parents[1] / "data" / "face_landmarker.task"


@lru_cache(maxsize=8)
def verified_model_path(path: str | None = None) -> Path:
    """Resolve the model path and check it; the bundled file must match its known SHA-256."""
    p = Path(path) if path else default_model_path()
    if not p.is_file():
        raise ModelFileError(f"Face Landmarker model file not found: {p}")
    if path is None:
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        if digest != MODEL_SHA256:
            raise ModelFileError(
                f"{p} has SHA-256 {digest[:16]}..., expected {MODEL_SHA256[:16]}...: the bundled "
                "landmarker is damaged; reinstall dfe."
            )
    return p


@dataclass
class FaceObservation:
    """One face in one frame, as MediaPipe sees it."""

    landmarks: np.ndarray  # (478, 3) normalised: x, y in [0, 1] of width/height, z on x's scale
    blendshapes: np.ndarray  # (52,) scores in [0, 1]
    matrix: np.ndarray  # (4, 4) MediaPipe facial transformation matrix
    bbox: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0))  # x, y, w, h px
    face_id: int = 0


def _quiet_native_logs() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover
        pass


IMAGE_SEARCH_FACES = 5  # IMAGE mode looks for at least this many faces, then keeps the largest


class FaceLandmarker:
    """MediaPipe Face Landmarker in IMAGE or VIDEO (tracking) mode. Use as a context manager.

    MediaPipe's IMAGE mode with ``num_faces=1`` can return no face at all on a group photo (its
    detector keeps one candidate before landmarking, and that one can fail). So in IMAGE mode dfe
    asks for at least :data:`IMAGE_SEARCH_FACES` faces and keeps the ``max_faces`` largest.
    """

    def __init__(self, mode: str = "image", max_faces: int = 1, model_path: str | None = None,
                 min_confidence: float = 0.5):
        if mode not in ("image", "video"):
            raise ValueError("mode must be 'image' or 'video'")
        _quiet_native_logs()
        path = verified_model_path(str(model_path) if model_path else None)
        with quiet_native("MediaPipe"):  # its native code logs to fd 2 while it loads and closes
            from mediapipe.tasks.python import vision
            from mediapipe.tasks.python.core.base_options import BaseOptions

            options = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(path)),
                running_mode=vision.RunningMode.VIDEO if mode == "video" else vision.RunningMode.IMAGE,
                num_faces=max_faces if mode == "video" else max(max_faces, IMAGE_SEARCH_FACES),
                min_face_detection_confidence=min_confidence,
                min_face_presence_confidence=min_confidence,
                min_tracking_confidence=min_confidence,
                output_face_blendshapes=True,
                output_facial_transformation_matrixes=True,
            )
            self._impl = vision.FaceLandmarker.create_from_options(options)
        self.mode = mode
        self.max_faces = max_faces
        self._last_ts = -1

    def detect(self, rgb: np.ndarray, timestamp_ms: int | None = None) -> list[FaceObservation]:
        """Faces in one RGB uint8 frame (H, W, 3). VIDEO mode needs increasing timestamps."""
        import mediapipe as mp

        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        if self.mode == "video":
            ts = int(timestamp_ms or 0)
            ts = max(ts, self._last_ts + 1)  # MediaPipe requires strictly increasing timestamps
            self._last_ts = ts
            result = self._impl.detect_for_video(image, ts)
        else:
            result = self._impl.detect(image)
        h, w = rgb.shape[:2]
        faces = []
        for i, lms in enumerate(result.face_landmarks):
            arr = np.array([(p.x, p.y, p.z) for p in lms], dtype=np.float32)
            bs = np.zeros(len(BLENDSHAPE_NAMES), dtype=np.float32)
            if result.face_blendshapes:
                for c in result.face_blendshapes[i]:
                    bs[c.index] = c.score
            matrix = (np.asarray(result.facial_transformation_matrixes[i], dtype=np.float32)
                      if result.facial_transformation_matrixes else np.eye(4, dtype=np.float32))
            x0, y0 = arr[:, 0].min() * w, arr[:, 1].min() * h
            x1, y1 = arr[:, 0].max() * w, arr[:, 1].max() * h
            faces.append(FaceObservation(arr, bs, matrix, (float(x0), float(y0), float(x1 - x0), float(y1 - y0))))
        if len(faces) > self.max_faces:  # IMAGE mode searched for more: keep the largest
            faces = sorted(faces, key=lambda f: -f.bbox[2] * f.bbox[3])[: self.max_faces]
        return faces

    def close(self) -> None:
        if getattr(self, "_impl", None) is not None:
            with quiet_native("MediaPipe"):  # its native code logs to fd 2 while it loads and closes
                self._impl.close()
            self._impl = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def iou(a: tuple, b: tuple) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Gives each face a stable ``face_id`` across frames by greedy box overlap."""

    def __init__(self, min_iou: float = 0.3, max_gap: int = 30):
        self.tracks: dict[int, tuple[tuple, int]] = {}  # id -> (bbox, last frame)
        self.next_id = 0
        self.min_iou = min_iou
        self.max_gap = max_gap

    def assign(self, faces: list[FaceObservation], frame: int) -> list[FaceObservation]:
        live = {k: v for k, v in self.tracks.items() if frame - v[1] <= self.max_gap}
        pairs = sorted(((iou(f.bbox, box), fi, tid) for fi, f in enumerate(faces)
                        for tid, (box, _) in live.items()), reverse=True)
        taken_f, taken_t = set(), set()
        for score, fi, tid in pairs:
            if score < self.min_iou or fi in taken_f or tid in taken_t:
                continue
            faces[fi].face_id = tid
            taken_f.add(fi)
            taken_t.add(tid)
        # new faces get new ids, left to right for a stable order in a still image
        for fi in sorted(set(range(len(faces))) - taken_f, key=lambda i: faces[i].bbox[0]):
            faces[fi].face_id = self.next_id
            self.next_id += 1
        for f in faces:
            self.tracks[f.face_id] = (f.bbox, frame)
        return sorted(faces, key=lambda f: f.face_id)
