"""Media in: find images and videos, stream their frames with timestamps."""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfe.errors import DfeError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm"}
MAX_SIDE = 1920  # frames larger than this are downscaled before landmarking (8K-safe)
MAX_BAD_RUN = 50  # undecodable frames in a row before a video counts as ended (truncated)
NATIVE_LOG_ENV = "DFE_NATIVE_LOG"  # set by the runner: the run's native.log


class quiet_native:
    """Keep what native code (OpenCV, ffmpeg, libpng, MediaPipe) prints to file descriptor 2 out
    of the user's terminal: into the run's log (``$DFE_NATIVE_LOG``, set by the runner) or, outside
    a run, into dfe's debug log. With ``--verbose`` (debug logging) nothing is redirected."""

    def __init__(self, what: str = ""):
        self.what = what
        self.saved = None

    def __enter__(self):
        if logging.getLogger("dfe").isEnabledFor(logging.DEBUG):
            return self
        try:
            sys.stderr.flush()
            self.sink = tempfile.TemporaryFile()
            self.saved = os.dup(2)
            os.dup2(self.sink.fileno(), 2)
        except (OSError, ValueError, AttributeError):  # no file descriptor 2 to borrow
            self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            return
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.sink.seek(0)
        text = self.sink.read().decode("utf-8", "replace").strip()
        self.sink.close()
        if not text:
            return
        target = os.environ.get(NATIVE_LOG_ENV)
        if target:
            try:
                with open(target, "a", encoding="utf-8") as fh:
                    fh.write(f"--- {self.what}\n{text}\n")
                return
            except OSError:
                pass
        log.debug("native output (%s): %s", self.what, text)


def broken_link_reason(path: str | Path) -> str | None:
    """One sentence when ``path`` is a symbolic link that leads nowhere (a loop or a missing
    target), else None."""
    path = Path(path)
    if not path.is_symlink():
        return None
    try:
        path.resolve(strict=True)
    except RuntimeError:
        return "a symbolic link loop (the link leads, through other links, back to itself)"
    except OSError:
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"a symbolic link to a missing file ({target})"
    return None


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


class MediaError(DfeError, RuntimeError):
    """An input that cannot be read as media; the message is one sentence for the run report."""


@dataclass
class Frame:
    """One decoded frame: RGB uint8 pixels (possibly downscaled), its index and time. ``rgb`` is
    None for a frame the decoder could not read in the middle of a video."""

    index: int
    timestamp: float  # seconds
    rgb: np.ndarray
    scale: float = 1.0  # pixels of rgb per pixel of the original


@dataclass
class InputProblem:
    """Something named on the command line that yields no media (empty folder, bad glob...)."""

    path: str
    error: str


def media_kind(path: str | Path) -> str | None:
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def find_media(inputs: list[str | Path]) -> tuple[list[Path], list[InputProblem]]:
    """Expand files, folders (recursive) and globs into media files, plus the problems met
    (a symbolic link loop or a link to a missing file is a problem of its own, never a crash)."""
    found: list[Path] = []
    problems: list[InputProblem] = []
    for item in inputs:
        item = str(item)
        p = Path(item)
        if p.is_dir():
            try:
                entries = sorted(f for f in p.rglob("*") if media_kind(f))
                files = [f for f in entries if f.is_file()]
            except OSError as e:
                problems.append(InputProblem(item, f"cannot read folder: {e}"))
                continue
            for f in entries:
                reason = broken_link_reason(f)
                if reason:
                    problems.append(InputProblem(str(f), reason))
            if not files and not any(pr.path.startswith(str(p)) for pr in problems):
                problems.append(InputProblem(item, "folder contains no images or videos"))
            found += files
        elif p.is_file():
            if media_kind(p):
                found.append(p)
            else:
                problems.append(InputProblem(item, f"not a supported image or video type ({p.suffix or 'no suffix'})"))
        elif broken_link_reason(p):
            problems.append(InputProblem(item, broken_link_reason(p)))
        elif any(ch in item for ch in "*?["):
            files = sorted(Path(f) for f in glob.glob(item, recursive=True) if media_kind(f))
            if not files:
                problems.append(InputProblem(item, "pattern matches no images or videos"))
            found += files
        else:
            problems.append(InputProblem(item, "no such file or folder"))
    unique = list(dict.fromkeys(_resolved(f) for f in found))
    return unique, problems


def _fit(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return rgb, scale


def read_image(path: str | Path, max_side: int = MAX_SIDE) -> Frame:
    """Read an image as RGB; huge images are decoded at reduced size to bound memory."""
    import cv2

    path = Path(path)
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise MediaError("empty file")
    with quiet_native(str(path)):
        header = cv2.imdecode(data, cv2.IMREAD_REDUCED_COLOR_2) if data.size > 50_000_000 else None
        bgr = header if header is not None else cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise MediaError("not a readable image")
    rgb, scale = _fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), max_side)
    return Frame(0, 0.0, rgb, scale)


@dataclass
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int


def video_info(path: str | Path) -> VideoInfo:
    import cv2

    with quiet_native(str(path)):
        cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise MediaError("not a readable video (cannot open container)")
        return VideoInfo(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()


def iter_video(path: str | Path, max_side: int = MAX_SIDE, start: int = 0,
               stop: int | None = None) -> Iterator[Frame]:
    """Stream a video's frames as RGB with timestamps in seconds (from the container when known)."""
    import cv2

    path = Path(path)
    if path.stat().st_size == 0:
        raise MediaError("empty file")
    with quiet_native(str(path)):
        cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise MediaError("not a readable video (cannot open container)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    announced = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    try:
        if start:
            with quiet_native(str(path)):
                cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        index = start
        bad: list[Frame] = []  # undecodable frames, yielded only once a good frame follows them
        while stop is None or index < stop:
            with quiet_native(str(path)):  # a damaged frame makes ffmpeg complain
                ok, bgr = cap.read()
            if not ok:  # a damaged frame: read on while the container announces more
                if index >= announced or len(bad) >= MAX_BAD_RUN:
                    break
                bad.append(Frame(index, index / fps if fps else float(index), None, 1.0))
                index += 1
                continue
            yield from bad
            bad = []
            msec = cap.get(cv2.CAP_PROP_POS_MSEC)
            ts = msec / 1000.0 if msec > 0 or index == 0 else (index / fps if fps else float(index))
            rgb, scale = _fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), max_side)
            yield Frame(index, ts, rgb, scale)
            index += 1
        if index - len(bad) == start:
            raise MediaError("video has no decodable frames")
    finally:
        cap.release()


@dataclass(frozen=True)
class Sampling:
    """Which frames of a video to read: from ``start`` to ``end`` seconds, at most ``fps`` per second."""

    fps: float | None = None
    start: float | None = None
    end: float | None = None

    def __post_init__(self):
        if self.fps is not None and self.fps <= 0:
            raise ValueError("--fps must be positive")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("--end must be after --start")

    def window(self, info: VideoInfo) -> tuple[int, int | None]:
        """First frame index and the index to stop before."""
        rate = info.fps or 30.0
        first = int(round((self.start or 0.0) * rate))
        return first, (int(round(self.end * rate)) if self.end is not None else None)

    def expected(self, info: VideoInfo) -> int:
        first, stop = self.window(info)
        n = max((info.frames if stop is None else min(stop, info.frames)) - first, 0)
        return int(np.ceil(n * min(1.0, self.fps / info.fps))) if self.fps and info.fps else n


def iter_frames(path: str | Path, max_side: int = MAX_SIDE, sampling: Sampling | None = None) -> Iterator[Frame]:
    """Frames of an image (one) or a video (streamed; ``sampling`` picks a time window and rate)."""
    kind = media_kind(path)
    if kind == "image":
        yield read_image(path, max_side)
    elif kind == "video":
        if sampling is None or sampling == Sampling():
            yield from iter_video(path, max_side)
            return
        first, stop = sampling.window(video_info(path))
        next_time = None
        for frame in iter_video(path, max_side, start=first, stop=stop):
            if sampling.fps is not None:
                if next_time is not None and frame.timestamp < next_time - 1e-6:
                    continue
                next_time = (next_time if next_time is not None else frame.timestamp) + 1.0 / sampling.fps
                while next_time <= frame.timestamp:
                    next_time += 1.0 / sampling.fps
            yield frame
    else:
        raise MediaError(f"not a supported image or video type ({Path(path).suffix})")


def read_frames(path: str | Path, indices) -> dict[int, Frame]:
    """Several frames of one file in one pass (images: frame 0 for any index)."""
    wanted = sorted({int(i) for i in indices})
    if not wanted:
        return {}
    if media_kind(path) == "image":
        image = read_image(path)
        return {i: image for i in wanted}
    out = {}
    for frame in iter_video(path, start=wanted[0], stop=wanted[-1] + 1):
        if frame.index in wanted and frame.rgb is not None:
            out[frame.index] = frame
    return out


def read_frame(path: str | Path, index: int = 0) -> Frame:
    """One frame of a file (index ignored for images): for crops in figures."""
    if media_kind(path) == "image":
        return read_image(path)
    for frame in iter_video(path, start=index, stop=index + 1):
        return frame
    raise MediaError(f"{path} has no frame {index}")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes; of a folder: of every file's relative path and content."""
    h = hashlib.sha256()
    path = Path(path)
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0" + file_sha256(f).encode())
        return h.hexdigest()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
