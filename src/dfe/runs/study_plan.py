"""A study's configuration (study.toml) and its plan: the steps it will run and how long each should take."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from dfe.analysis.rows import BAG_NAME
from dfe.errors import DfeError
from dfe.runs.executors import default_workers
from dfe.extraction.pipeline import media_frames
from dfe.extraction.io import Sampling, find_media, media_kind
from dfe.version import __version__


STEPS = ("extract", "dictionary", "encode", "events", "atlas", "evaluate", "task", "report")


class StudyError(DfeError, ValueError):
    """The study cannot run as configured (one sentence naming the file or option)."""


@dataclass
class StudyConfig:
    """Everything a study depends on; written to ``study.toml`` beside the results."""

    media: list[str]
    labels: str
    target: str
    output: str
    group: str | None = None
    fit: bool = False  # fit a dictionary on the study's tables (and one per outer fold for prediction)
    model: str | None = None  # a dictionary file to reuse instead (default: the bundled starter)
    codebook_size: int = 64  # with fit
    levels: int = 4  # with fit
    epochs: int = 20  # with fit
    folds: int = 5
    seeds: int = 5
    seed: int = 0
    dynamic: str = "auto"  # auto (on when a labelled input is a video) | on | off
    baselines: list[str] = field(default_factory=list)  # per-video feature CSVs from other tools (OpenFace, py-feat)
    face_model: str | None = None  # your face model file (default: the bundled one)
    fps: float | None = None
    workers: int | None = None  # extract processes (default: all cores)
    atlas_codes: int = 64  # draw at most this many codes in the atlas

    def __post_init__(self):
        if self.fit and self.model:
            raise StudyError("give either --fit (a new dictionary) or --model (reuse one), not both")
        if self.dynamic not in ("auto", "on", "off"):
            raise StudyError(f"--dynamic must be auto, on or off, not {self.dynamic!r}")
        for name in ("folds", "seeds", "codebook_size", "levels", "epochs", "atlas_codes"):
            if getattr(self, name) < 1:
                raise StudyError(f"--{name.replace('_', '-')} must be at least 1")

    @property
    def out(self) -> Path:
        return Path(self.output)

    def resolved(self) -> "StudyConfig":
        """Paths made absolute, so study.toml repeats the run from any folder."""
        def absolute(p):
            return str(Path(p).resolve()) if p else p

        return StudyConfig(**{**asdict(self), "media": [absolute(m) for m in self.media], "labels": absolute(self.labels),
                              "output": absolute(self.output), "model": absolute(self.model),
                              "face_model": absolute(self.face_model),
                              "baselines": [absolute(b) for b in self.baselines]})


def toml_text(config: StudyConfig) -> str:
    """study.toml (a flat table; None values left out), readable by :mod:`tomllib`."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))  # a JSON string is a valid TOML basic string

    lines = ["# dfe study: rerun exactly with `dfe study --config study.toml`", f"# written by dfe {__version__}"]
    lines += [f"{f.name} = {value(getattr(config, f.name))}" for f in fields(config) if getattr(config, f.name) is not None]
    return "\n".join(lines) + "\n"


def read_config(path: str | Path) -> StudyConfig:
    import tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise StudyError(f"cannot read the study file {path} ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise StudyError(f"study file {path} is not valid TOML ({e})") from None
    known = {f.name for f in fields(StudyConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise StudyError(f"study file {path} has unknown keys: {', '.join(unknown)}")
    missing = [k for k in ("media", "labels", "target", "output") if k not in data]
    if missing:
        raise StudyError(f"study file {path} lacks {', '.join(missing)}")
    return StudyConfig(**data)


@dataclass
class PlannedStep:
    name: str
    does: str
    estimate_s: float


@dataclass
class StudyPlan:
    config: StudyConfig
    media: list[Path]
    problems: list[tuple[str, str]]  # (input, one sentence) found before extraction
    videos: int
    photos: int
    frames: int
    steps: list[PlannedStep]

    @property
    def estimate_s(self) -> float:
        return float(sum(s.estimate_s for s in self.steps))

    def text(self) -> str:
        c = self.config
        head = (f"study of {len(self.media)} inputs ({self.videos} videos, {self.photos} photos, about {self.frames:,} frames) "
                f"-> {c.output}; target {c.target!r}" + (f", held out by {c.group!r}" if c.group else ", held out by video"))
        lines = [head] + [f"  {i}. {s.name:<10} {s.does}  (~{duration(s.estimate_s)})" for i, s in enumerate(self.steps, 1)]
        lines += [f"  problem: {p}: {e}" for p, e in self.problems]
        lines.append(f"estimated time: {duration(self.estimate_s)} with {study_workers(c)} extract worker(s) "
                     "(first run; finished inputs and up-to-date steps are skipped on reruns)")
        return "\n".join(lines)


def duration(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def study_workers(c: StudyConfig) -> int:
    return c.workers or default_workers()


# rates measured on the 2-core development machine (docs/benchmarks.md: Performance, and bench/study.py)
PHOTO_S = 0.5  # extract, per photo and worker (landmarker + identity fit + AUs)


VIDEO_FPS = 85.0  # extract, video frames per second and worker


FIT_S_PER_FRAME_EPOCH = 4e-5


FIT_MIN_EPOCH_S = 0.35  # small corpora: at least 16 steps an epoch


SET_FIT_S = 0.4  # one feature set fitted on one fold (LogisticRegressionCV)


def fit_seconds(frames: int, epochs: int) -> float:
    return 3.0 + epochs * max(FIT_MIN_EPOCH_S, frames * FIT_S_PER_FRAME_EPOCH)


def plan_study(config: StudyConfig) -> StudyPlan:
    """What the study will do and about how long it takes, before any work."""
    media, problems = find_media(config.media)
    sampling = Sampling(config.fps)
    counts = [media_frames(p, sampling) for p in media]
    videos = sum(media_kind(p) == "video" for p in media)
    frames = int(sum(counts))
    workers = max(1, min(study_workers(config), len(media) or 1))
    video_frames = sum(n for p, n in zip(media, counts) if media_kind(p) == "video")
    extract_s = 3.0 + ((len(media) - videos) * PHOTO_S + video_frames / VIDEO_FPS) / workers
    codes = config.codebook_size if config.fit else 128
    sets = 6 + (3 if config.dynamic != "off" and videos else 0) + len(config.baselines)
    train_frames = int(frames * (config.folds - 1) / config.folds)
    steps = [
        PlannedStep("extract", f"faces -> per-frame tables of {len(media)} inputs into tables/", extract_s),
        PlannedStep("dictionary", (f"fit a {config.codebook_size}-code, {config.levels}-level dictionary on every table"
                                   if config.fit else f"reuse {config.model or 'the bundled starter dictionary'}"),
                    fit_seconds(frames, config.epochs) if config.fit else 0.5),
        PlannedStep("encode", "tokens for every table into encoded/", 2.0 + frames / 20000 + 0.05 * len(media)),
        PlannedStep("events", "onset/apex/offset per code, ELAN files, timelines into events/", 1.0 + 1.0 * videos + 0.05 * len(media)),
        PlannedStep("atlas", f"atlas of up to {min(config.atlas_codes, codes)} codes into atlas/", 3.0 + 0.08 * min(config.atlas_codes, codes)),
        PlannedStep("evaluate", "fidelity and diversity on held-out people vs the baselines into evaluate/",
                    5.0 + (fit_seconds(frames, 40) if not config.fit else 0.0)),
        PlannedStep("task", f"{config.seeds} x {config.folds}-fold grouped CV of {sets} feature sets"
                            + (", a dictionary refitted per fold" if config.fit else ""),
                    config.seeds * config.folds * (sets * SET_FIT_S + (fit_seconds(train_frames, config.epochs) if config.fit else 0))),
        PlannedStep("report", "results.json and index.html", 2.0 + 0.2 * videos),
    ]
    return StudyPlan(config, media, [(p.path, p.error) for p in problems], videos, len(media) - videos, frames, steps)


DFE_NAME = BAG_NAME  # dfe's row in a study's results


AU_NAME = "action units (OpenFace-style AU_r functionals)"


