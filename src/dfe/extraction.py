"""The extraction stage: media -> one per-frame table per input, with a run report.

Data flow per input: :mod:`dfe.io` frames -> :mod:`dfe.face` landmarks -> :mod:`dfe.expression`
alignment, neutral and psi -> :mod:`dfe.table` (written atomically). A batch never stops on a bad
input: each gets a line in ``report.json`` and the run goes on; a rerun skips finished inputs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from dfe import expression
from dfe.face import BLENDSHAPE_NAMES, FaceLandmarker, FaceObservation, FaceTracker
from dfe.io import Frame, MediaError, find_media, iter_frames, media_kind, read_image, video_info
from dfe.identity import FaceModel, IdentityFit, load_face_model, track_neutral
from dfe.mesh import N_VERTICES, canonical_mesh
from dfe.table import BLENDSHAPE_COLUMNS, LANDMARK_COLUMNS, META_COLUMNS, identity_columns, write_table

log = logging.getLogger(__name__)

REPORT_NAME = "report.json"


@dataclass
class ExtractOptions:
    max_faces: int = 1
    landmarker_model: str | None = None
    neutral: str | None = None  # None | "auto" (<prefix>_neutral.<ext> beside the image) | CSV path
    format: str = "parquet"
    max_align_rmse: float = 1.2  # cm; a detection fitting the canonical face worse is not a human face
    overwrite: bool = False
    progress: bool = True
    identity: str = "auto"  # auto | model | track | canonical: see dfe.identity.track_neutral
    face_model: str | None = None  # a face model file (default: the bundled one)
    persons: str | None = None  # CSV image,person: photos of one person share one identity fit


@dataclass
class InputResult:
    """One line of the run report."""

    input: str
    status: str  # ok | failed | skipped
    output: str | None = None
    frames: int = 0
    faces: int = 0  # rows with a face found
    seconds: float = 0.0
    error: str | None = None


@dataclass
class RunReport:
    outdir: str
    results: list[InputResult] = field(default_factory=list)

    @property
    def failed(self) -> list[InputResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def save(self) -> Path:
        path = Path(self.outdir) / REPORT_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"results": [asdict(r) for r in self.results]}, indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, outdir: str | Path) -> "RunReport":
        path = Path(outdir) / REPORT_NAME
        report = cls(str(outdir))
        if path.is_file():
            try:
                report.results = [InputResult(**r) for r in json.loads(path.read_text())["results"]]
            except (ValueError, KeyError, TypeError):
                log.warning("%s is unreadable; starting a new report", path)
        return report


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
    row = {
        "face_id": obs.face_id, "success": 1, "presence": obs.presence,
        "bbox_x": obs.bbox[0] * inv, "bbox_y": obs.bbox[1] * inv,
        "bbox_w": obs.bbox[2] * inv, "bbox_h": obs.bbox[3] * inv,
        "pose_yaw": yaw, "pose_pitch": pitch, "pose_roll": roll,
        "pose_tx": float(obs.matrix[0, 3]), "pose_ty": float(obs.matrix[1, 3]), "pose_tz": float(obs.matrix[2, 3]),
        "pose_scale": (1.0 / align.scale) * inv, "align_rmse": align.rmse,
    }
    row.update(zip(BLENDSHAPE_COLUMNS, obs.blendshapes.tolist()))
    return row


def _empty_row() -> dict:
    row = {c: np.nan for c in META_COLUMNS[3:]}
    row.update({"face_id": -1, "success": 0, "presence": 0.0})
    row.update({c: np.nan for c in BLENDSHAPE_COLUMNS})
    return row


class _References:
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
                 landmarker: FaceLandmarker | None = None, progress: bool = False) -> FileObservations:
    """Landmarks, blendshapes, pose and aligned meshes of every frame and face of one input
    (raises :class:`MediaError` on unreadable media)."""
    options = options or ExtractOptions()
    path = Path(path)
    kind = media_kind(path)
    if kind is None:
        raise MediaError(f"not a supported image or video type ({path.suffix})")
    mesh = canonical_mesh()
    own = landmarker is None or kind == "video"  # VIDEO mode needs a fresh tracker per file
    lm = FaceLandmarker(kind, options.max_faces, options.landmarker_model) if own else landmarker
    tracker = FaceTracker()
    meta, aligned, blend, lms = [], [], [], []
    total = video_info(path).frames if kind == "video" else 1
    try:
        bar = tqdm(total=total or None, desc=path.name, unit="frame", leave=False, disable=not progress)
        for frame in iter_frames(path):
            h, w = frame.rgb.shape[:2]
            found = lm.detect(frame.rgb, int(round(frame.timestamp * 1000)))
            fits = [(o, expression.align_to_canonical(o.landmarks, w, h, mesh)) for o in found]
            kept = [(o, a) for o, a in fits if a.rmse <= options.max_align_rmse]
            tracker.assign([o for o, _ in kept], frame.index)  # sets each kept face's face_id
            kept.sort(key=lambda pair: pair[0].face_id)
            base = {"file": str(path), "frame": frame.index, "timestamp": frame.timestamp}
            if not kept:
                meta.append({**base, **_empty_row()})
                aligned.append(np.full((mesh.vertices.shape[0], 3), np.nan))
                blend.append(np.full(len(BLENDSHAPE_NAMES), np.nan))
                lms.append(np.full(len(LANDMARK_COLUMNS), np.nan, dtype=np.float32))
            for obs, al in kept:
                meta.append({**base, **_face_row(obs, frame, al)})
                aligned.append(al.mesh)
                blend.append(obs.blendshapes)
                lms.append(obs.landmarks.reshape(-1))
            bar.update(1)
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
    (see :func:`dfe.identity.track_neutral`), identity coefficients as ``id_*`` columns."""
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
    df["neutral_source"] = source
    df["neutral_frames"] = n_neutral
    blocks = [df, pd.DataFrame(obs.landmarks, columns=LANDMARK_COLUMNS),
              pd.DataFrame(ident, columns=identity_columns(model.n_identity)),
              pd.DataFrame(psi, columns=[f"psi_{i}" for i in range(psi.shape[1])])]
    out = pd.concat(blocks, axis=1)
    out.attrs["expected_frames"] = obs.expected_frames
    return out


def extract_file(path: str | Path, options: ExtractOptions | None = None,
                 landmarker: FaceLandmarker | None = None, neutral_mesh: np.ndarray | None = None,
                 neutral_name: str | None = None, progress: bool = False,
                 person: IdentityFit | None = None) -> pd.DataFrame:
    """Per-frame table of one image or video (raises :class:`MediaError` on unreadable media).

    Identity is removed as ``options.identity`` says (:func:`dfe.identity.track_neutral`); a
    neutral photo given as ``neutral_mesh`` (its aligned mesh) always wins, and ``person`` is the
    pooled identity fit of several photos of one person.
    """
    options = options or ExtractOptions()
    obs = observe_file(path, options, landmarker, progress)
    model = load_face_model(options.face_model)
    return observations_table(obs, options.identity, model, neutral_mesh, neutral_name, person)


# ---------------------------------------------------------------- a batch

def output_name(path: Path, taken: set[str], fmt: str) -> str:
    """``<stem>.<fmt>``; a second input with the same stem gets a short hash of its path."""
    name = f"{path.stem}.{fmt}"
    if name in taken:
        name = f"{path.stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}.{fmt}"
    taken.add(name)
    return name


def extract(inputs: list[str | Path], outdir: str | Path, options: ExtractOptions | None = None) -> RunReport:
    """Extract every image and video in ``inputs`` into ``outdir``; returns the run report.

    Finished outputs are kept and skipped on a rerun unless ``options.overwrite``.
    """
    options = options or ExtractOptions()
    if options.format not in ("parquet", "csv"):
        raise ValueError("format must be 'parquet' or 'csv'")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files, problems = find_media(inputs)
    previous = {r.input: r for r in RunReport.load(outdir).results}
    report = RunReport(str(outdir))
    for prob in problems:
        report.results.append(InputResult(prob.path, "failed", error=prob.error))
        log.error("%s: %s", prob.path, prob.error)
    neutrals = neutral_lookup(options.neutral, files)
    persons = person_lookup(options.persons)
    load_face_model(options.face_model)  # a missing or damaged face model stops the run before any work
    taken: set[str] = set()
    image_lm: FaceLandmarker | None = None
    refs: _References | None = None
    try:
        for path in tqdm(files, desc="extract", unit="file", disable=not options.progress or len(files) < 2):
            out = outdir / output_name(path, taken, options.format)
            before = previous.get(str(path))
            if out.exists() and not options.overwrite and before and before.status in ("ok", "skipped"):
                report.results.append(InputResult(str(path), "skipped", str(out), before.frames, before.faces))
                continue
            start = time.perf_counter()
            try:
                if media_kind(path) == "image" and image_lm is None:
                    image_lm = FaceLandmarker("image", options.max_faces, options.landmarker_model)
                    refs = _References(image_lm, options, persons)
                ref = neutrals.get(path)
                df = extract_file(path, options, image_lm, refs.neutral(ref) if ref and refs else None,
                                  ref.name if ref else None,
                                  progress=options.progress and media_kind(path) == "video",
                                  person=refs.person(path) if refs else None)
                write_table(df, out)
                result = InputResult(str(path), "ok", str(out), int(df["frame"].nunique()),
                                     int(df["success"].sum()))
                expected = df.attrs.get("expected_frames", 1)
                if result.frames < 0.9 * expected:
                    result.status = "failed"
                    result.error = f"truncated video: decoded {result.frames} of {expected} frames (partial table kept)"
                    log.error("%s: %s", path, result.error)
            except Exception as e:  # noqa: BLE001 - one bad input must never stop the batch
                result = InputResult(str(path), "failed", error=f"{type(e).__name__}: {e}" if not isinstance(e, MediaError) else str(e))
                log.error("%s: %s", path, result.error)
            result.seconds = round(time.perf_counter() - start, 3)
            report.results.append(result)
            report.save()  # after every input: a crash never loses the record of finished work
    finally:
        if image_lm is not None:
            image_lm.close()
    report.save()
    return report
