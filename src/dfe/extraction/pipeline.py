"""The extraction stage: media -> one per-frame table per input.

Data flow per input: :mod:`dfe.extraction.io` frames -> :mod:`dfe.extraction.face` landmarks -> :mod:`dfe.extraction.expression`
alignment -> :mod:`dfe.extraction.identity` neutral -> psi -> :mod:`dfe.table`. The batch is driven by
:mod:`dfe.runs.manifest` (manifest, output names, resume, report.json): a bad input never stops it.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from dfe.extraction import expression
from dfe.extraction.action_units import frame_action_units_and_gaze
from dfe.extraction.face import BLENDSHAPE_NAMES, FaceLandmarker, FaceObservation, FaceTracker
from dfe.extraction.identity import DATA_FILE, FaceModel, IdentityFit, load_face_model, track_neutral
from dfe.extraction.io import Frame, MediaError, Sampling, file_sha256, iter_frames, media_kind, video_info
from dfe.extraction.mesh import N_VERTICES, canonical_mesh
from dfe.table import (BBOX_COLUMNS, BLENDSHAPE_COLUMNS, DETECTION_COLUMNS, FRAME_COLUMNS, LANDMARK_COLUMNS,
                       META_COLUMNS, POSE_COLUMNS, identity_columns, psi_column_names)

log = logging.getLogger(__name__)
FORMATS = {"parquet": ".parquet", "csv": ".csv", "openface": ".csv"}  # --format -> table suffix


@dataclass
class ExtractOptions:
    max_faces: int = 1
    landmarker_model: str | None = None
    neutral: str | None = None  # None | "auto" (<prefix>_neutral.<ext> beside the image) | CSV path
    format: str = "parquet"  # parquet | csv | openface (OpenFace 2.2 CSV columns first, dfe's after; dfe.extraction.openface)
    max_align_rmse: float = expression.MAX_ALIGN_RMSE  # cm; a detection fitting worse is no human face
    overwrite: bool = False
    progress: bool = True
    identity: str = "auto"  # auto | model | track | canonical: see dfe.extraction.identity.track_neutral
    face_model: str | None = None  # a face model file (default: the bundled one)
    persons: str | None = None  # CSV image,person: photos of one person share one identity fit
    fps: float | None = None  # videos: at most this many frames per second
    start: float | None = None  # videos: from this second
    end: float | None = None  # videos: up to this second
    landmarks: bool = True  # keep the 478 raw landmarks (lm_*) in the table (about half of its bytes)

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.fps, self.start, self.end)




# ---------------------------------------------------------------- neutral references (images)

def neutral_lookup(spec: str | None, files: list[Path]) -> dict[Path, Path]:
    """Map image -> its person's neutral image.

    ``auto``: a file ``<prefix>_neutral.<ext>`` is the neutral of every image ``<prefix>_*`` in
    the same folder. A CSV path: columns ``image,neutral`` (paths relative to the CSV allowed).
    """
    if not spec:
        return {}
    mapping: dict[Path, Path] = {}
    if spec != "auto" and not Path(spec).is_file():
        raise FileNotFoundError(f"--neutral: {spec} is neither 'auto' nor an existing CSV file")
    if spec == "auto":
        for f in files:
            prefix = f.stem.rsplit("_", 1)[0]
            for cand in f.parent.glob(f"{prefix}_neutral.*"):
                if media_kind(cand) == "image":
                    mapping[f.resolve()] = cand.resolve()
        return mapping
    for img, neu in _csv_pairs(spec, "neutral", "--neutral").items():
        mapping[img] = Path(neu).resolve() if Path(neu).is_absolute() else (Path(spec).parent / neu).resolve()
    return mapping


def _csv_pairs(spec: str, column: str, option: str) -> dict[Path, str]:
    """Rows of a CSV ``image,<column>`` as {resolved image path: value} (paths relative to the CSV)."""
    csv_path = Path(spec)
    if not csv_path.is_file():
        raise FileNotFoundError(f"{option}: {spec} is not an existing CSV file")
    out: dict[Path, str] = {}
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            if "image" not in row or column not in row:
                raise ValueError(f"{option} CSV {spec} needs the columns image,{column}")
            img = Path(row["image"])
            out[(img if img.is_absolute() else csv_path.parent / img).resolve()] = row[column]
    return out


def person_lookup(spec: str | None) -> dict[Path, str]:
    """Map image -> person id from a CSV ``image,person``: those photos share one identity fit."""
    return _csv_pairs(spec, "person", "--persons") if spec else {}


# ---------------------------------------------------------------- one input

def _face_row(obs: FaceObservation, frame: Frame, align: expression.Alignment) -> dict:
    yaw, pitch, roll = align.pose_angles
    inv = 1.0 / frame.scale  # report boxes in the original image's pixels
    detection = [obs.face_id, 1, 1.0, ""]  # MediaPipe Tasks gives no presence score: 1.0 for a found face
    bbox = [v * inv for v in obs.bbox[:4]]
    pose = [yaw, pitch, roll, float(obs.matrix[0, 3]), float(obs.matrix[1, 3]), float(obs.matrix[2, 3]),
            (1.0 / align.scale) * inv]
    return dict(zip(DETECTION_COLUMNS + BBOX_COLUMNS + POSE_COLUMNS + ["align_rmse"] + BLENDSHAPE_COLUMNS,
                    detection + bbox + pose + [align.rmse] + obs.blendshapes.tolist()))


def _empty_row(reason: str = "no face") -> dict:
    """A frame without a face: its detection columns say why, the rest are NaN."""
    row = dict.fromkeys(META_COLUMNS[len(FRAME_COLUMNS):] + BLENDSHAPE_COLUMNS, np.nan)
    row.update(zip(DETECTION_COLUMNS, [-1, 0, 0.0, reason]))
    return row


class References:
    """What other photos tell about a person, computed once per run: the aligned mesh of a neutral
    reference photo, and the pooled identity fit of the photos of one person (``--persons``)."""

    def __init__(self, landmarker: FaceLandmarker, options: ExtractOptions, persons: dict[Path, str]):
        self.landmarker, self.options, self.persons = landmarker, options, persons
        self.meshes: dict[Path, np.ndarray | None] = {}
        self.fits: dict[str, IdentityFit | None] = {}

    def _first_face(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            obs = observe_file(path, self.options, self.landmarker)
        except MediaError as e:
            log.warning("cannot read reference photo %s (%s)", path, e)
            return None
        if not obs.success[0]:
            log.warning("no face in reference photo %s", path)
            return None
        return obs.aligned[0], obs.blendshapes[0]

    def neutral(self, path: Path) -> np.ndarray | None:
        """Aligned mesh of a neutral reference photo (None: unreadable or no face)."""
        if path not in self.meshes:
            face = self._first_face(path)
            self.meshes[path] = face[0] if face else None
        return self.meshes[path]

    def person(self, path: Path) -> IdentityFit | None:
        """The identity fit shared by every photo of this photo's person (None: not in --persons)."""
        pid = self.persons.get(path.resolve())
        if pid is None:
            return None
        if pid not in self.fits:
            faces = [f for f in (self._first_face(p) for p, q in self.persons.items() if q == pid) if f]
            model = load_face_model(self.options.face_model)
            self.fits[pid] = (model.fit(np.array([a for a, _ in faces]), np.array([b for _, b in faces]))
                              if faces else None)
        return self.fits[pid]


@dataclass
class FileObservations:
    """Everything the landmarker saw in one input, before identity is removed: one entry per row
    of the future table (a frame with no face is a row with NaNs)."""

    path: Path
    kind: str  # image | video
    rows: list[dict]  # table metadata per row (file, frame, timestamp, face_id, success, pose, ...)
    aligned: np.ndarray  # (n, 468, 3) aligned meshes, canonical cm
    blendshapes: np.ndarray  # (n, 52)
    landmarks: np.ndarray  # (n, 1434) normalised
    expected_frames: int  # what the container announced, to spot truncation

    @property
    def success(self) -> np.ndarray:
        return np.array([r["success"] == 1 for r in self.rows], dtype=bool)

    @property
    def face_ids(self) -> np.ndarray:
        return np.array([r["face_id"] for r in self.rows])


def observe_file(path: str | Path, options: ExtractOptions | None = None,
                 landmarker: FaceLandmarker | None = None, progress: bool = False,
                 on_frame: Callable[[int], None] | None = None) -> FileObservations:
    """Landmarks, blendshapes, pose and aligned meshes of every frame and face of one input
    (raises :class:`MediaError` on unreadable media). ``on_frame(n)`` hears of every ``n`` frames
    done (the runner counts them for its progress display)."""
    options = options or ExtractOptions()
    frames_done = on_frame or (lambda n: None)
    path = Path(path)
    kind = media_kind(path)
    if kind is None:
        raise MediaError(f"not a supported image or video type ({path.suffix})")
    mesh = canonical_mesh()
    total = options.sampling.expected(video_info(path)) if kind == "video" else 1  # unreadable: fails here
    own = landmarker is None or kind == "video"  # VIDEO mode needs a fresh tracker per file
    lm = FaceLandmarker(kind, options.max_faces, options.landmarker_model) if own else landmarker
    tracker = FaceTracker()
    anchors = load_face_model(options.face_model).anchors  # psi is aligned as the face model was built
    meta, aligned, blend, lms = [], [], [], []

    def add_faceless_row(base: dict, reason: str) -> None:
        meta.append({**base, **_empty_row(reason)})
        aligned.append(np.full((mesh.vertices.shape[0], 3), np.nan))
        blend.append(np.full(len(BLENDSHAPE_NAMES), np.nan))
        lms.append(np.full(len(LANDMARK_COLUMNS), np.nan, dtype=np.float32))

    try:
        bar = tqdm(total=total or None, desc=path.name, unit="frame", leave=False, disable=not progress)
        for frame in iter_frames(path, sampling=options.sampling):
            base = {"file": str(path), "frame": frame.index, "timestamp": frame.timestamp}
            if frame.rgb is None:  # undecodable frame in the middle of a video: a row, no face
                add_faceless_row(base, "undecodable frame")
                bar.update(1)
                frames_done(1)
                continue
            h, w = frame.rgb.shape[:2]
            found = lm.detect(frame.rgb, int(round(frame.timestamp * 1000)))
            fits = [(o, expression.align_to_canonical(o.landmarks, w, h, mesh, anchors)) for o in found]
            kept = [(o, a) for o, a in fits if a.rmse <= options.max_align_rmse]
            tracker.assign([o for o, _ in kept], frame.index)  # sets each kept face's face_id
            kept.sort(key=lambda pair: pair[0].face_id)
            if not kept:
                add_faceless_row(base, "no face")
            for obs, al in kept:
                meta.append({**base, **_face_row(obs, frame, al)})
                aligned.append(al.mesh)
                blend.append(obs.blendshapes)
                lms.append(obs.landmarks.reshape(-1))
            bar.update(1)
            frames_done(1)
        bar.close()
    finally:
        if own:
            lm.close()
    n = len(meta)
    return FileObservations(path, kind, meta, np.asarray(aligned).reshape(n, -1, 3),
                            np.asarray(blend, dtype=np.float64).reshape(n, len(BLENDSHAPE_NAMES)),
                            np.asarray(lms, dtype=np.float32).reshape(n, len(LANDMARK_COLUMNS)), total)


def observations_table(obs: FileObservations, identity_mode: str = "auto", face_model: FaceModel | None = None,
                       neutral_mesh: np.ndarray | None = None, neutral_name: str | None = None,
                       person: IdentityFit | None = None) -> pd.DataFrame:
    """The per-frame table of one input: psi = aligned mesh - each face track's neutral
    (see :func:`dfe.extraction.identity.track_neutral`), identity coefficients as ``id_*`` columns."""
    model = face_model or load_face_model()
    df = pd.DataFrame(obs.rows, columns=META_COLUMNS + BLENDSHAPE_COLUMNS)
    n_vert = obs.aligned.shape[1] if len(obs.rows) else N_VERTICES
    psi = np.full((len(df), n_vert * 3), np.nan, dtype=np.float32)
    ident = np.full((len(df), model.n_identity), np.nan, dtype=np.float32)
    source = np.full(len(df), "", dtype=object)
    n_neutral = np.zeros(len(df), dtype=np.int64)
    ok, face_ids = obs.success, obs.face_ids
    for fid in sorted(set(face_ids[ok])):
        rows = np.flatnonzero(ok & (face_ids == fid))
        neutral = track_neutral(obs.aligned[rows], obs.blendshapes[rows], obs.kind == "video", identity_mode,
                                model, neutral_mesh, neutral_name, person)
        psi[rows] = expression.geometry_psi(obs.aligned[rows], neutral.mesh)
        ident[rows] = neutral.coefficients
        source[rows] = neutral.source
        n_neutral[rows] = neutral.frames
    df["psi_kind"] = "geometry"
    df["psi_version"] = model.psi_version
    df["neutral_source"] = source
    df["neutral_frames"] = n_neutral
    blocks = [df, frame_action_units_and_gaze(psi, obs.blendshapes, obs.landmarks, df["bbox_w"], df["bbox_h"], source),
              pd.DataFrame(obs.landmarks, columns=LANDMARK_COLUMNS),
              pd.DataFrame(ident, columns=identity_columns(model.n_identity)),
              pd.DataFrame(psi, columns=psi_column_names(psi.shape[1]))]
    out = pd.concat(blocks, axis=1)
    out.attrs["expected_frames"] = obs.expected_frames
    return out


def extract_file(path: str | Path, options: ExtractOptions | None = None,
                 landmarker: FaceLandmarker | None = None, neutral_mesh: np.ndarray | None = None,
                 neutral_name: str | None = None, progress: bool = False,
                 person: IdentityFit | None = None, on_frame: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Per-frame table of one image or video (raises :class:`MediaError` on unreadable media).

    Identity is removed as ``options.identity`` says (:func:`dfe.extraction.identity.track_neutral`); a
    neutral photo given as ``neutral_mesh`` (its aligned mesh) always wins, and ``person`` is the
    pooled identity fit of several photos of one person.
    """
    options = options or ExtractOptions()
    obs = observe_file(path, options, landmarker, progress, on_frame)
    model = load_face_model(options.face_model)
    table = observations_table(obs, options.identity, model, neutral_mesh, neutral_name, person)
    if not options.landmarks:
        table = table.drop(columns=LANDMARK_COLUMNS)
    return table


# ---------------------------------------------------------------- a batch

def output_options(options: ExtractOptions) -> dict:
    """The options that change a table: a rerun with other values redoes the input."""
    model = options.face_model or DATA_FILE
    return {"max_faces": options.max_faces, "landmarker_model": options.landmarker_model, "neutral": options.neutral,
            "identity": options.identity, "face_model": file_sha256(model), "persons": options.persons,
            "max_align_rmse": options.max_align_rmse, "format": options.format,
            **({"fps": options.fps, "start": options.start, "end": options.end} if options.sampling != Sampling() else {}),
            **({"landmarks": False} if not options.landmarks else {})}



def media_frames(path: Path, sampling: Sampling | None = None) -> int:
    """Frames an input will yield (for progress totals): 1 for an image."""
    if media_kind(path) != "video":
        return 1
    try:
        return max((sampling or Sampling()).expected(video_info(path)), 1)
    except Exception:  # noqa: BLE001 - an unreadable file fails later, with its own record
        return 1










