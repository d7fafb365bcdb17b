"""One command for a whole study: media + a labels file -> tables, dictionary, tokens, events, atlas,
fidelity, prediction, and one report (``index.html`` + ``results.json``) in one folder.

The study folder::

    study.toml      the configuration, enough to repeat the run exactly (``dfe study --config``)
    tables/         dfe extract (run manifest: resume per input)
    dictionary.dfe  the bundled starter (copied) or a dictionary fitted on the study's tables
    encoded/        dfe encode (run manifest)
    events/         dfe events (run manifest)
    atlas/          dfe atlas
    evaluate/       dfe evaluate (fidelity, diversity, retrieval on held-out people/videos)
    task/           prediction: grouped CV of the bag of tokens vs every baseline, static and dynamic
    labels.csv      the labels, keyed by table id (paths in the user's file mapped through the manifest)
    steps.json      per study-level step: a hash of its inputs, so a rerun skips what is up to date
    results.json    every number;  index.html  the report

Resume: extract, encode and events run under their run manifests (finished inputs are skipped);
the other steps (dictionary, atlas, evaluate, task) keep a hash of their inputs (the table
fingerprints from the manifests, the dictionary's fingerprint, the labels' content, their options)
in ``steps.json`` and are redone only when it changed. The study imports the stages' public
functions; the stages know nothing of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from dfe.errors import DfeError
from dfe.version import __version__
from dfe.runs.executors import default_workers
from dfe.extraction.pipeline import ExtractOptions, media_frames
from dfe.extraction.io import Sampling, find_media, media_kind
from dfe.runs.manifest import Manifest, file_sha256
from dfe.analysis.labels import read_labels, read_video_features, require_columns
from dfe.analysis.task import cross_validate, feature_sets, load_task, paired_bootstrap, scores, summarise_folds, tokenizer_statement
from dfe.analysis.features import ActionUnitFunctionals, UserFeatures
from dfe.table import has_action_units, read_table, token_columns
from dfe.views.atlas import build_atlas
from dfe.runs.demo import starter_model_path
from dfe.analysis.evaluate import EvaluateOptions, evaluate
from dfe.analysis.events import EventOptions
from dfe.runs.events import events_corpus
from dfe.runs.extract import extract
from dfe.runs.encode import encode_corpus, table_rows
from dfe.views.study_report import write_index
from dfe.tokens.tokenizer import Tokenizer
from dfe.tokens.tables import fit_tables
from dfe.extraction.identity import face_model_provenance
from dfe.views.naming import name_codes
from dfe.views.figures import label_log_odds

log = logging.getLogger(__name__)

STEPS = ("extract", "dictionary", "encode", "events", "atlas", "evaluate", "task", "report")
CRASH_ENV = "DFE_STUDY_CRASH_IN"  # tests only: "encode:2" ends the process after 2 encoded tables
DFE_NAME = "dfe tokens (BoW)"
AU_NAME = "action units (OpenFace-style AU_r functionals)"


class StudyError(DfeError, ValueError):
    """The study cannot run as configured (one sentence naming the file or option)."""


# ---------------------------------------------------------------------------- configuration

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

    lines = ["# dfe study: rerun exactly with `dfe study --config study.toml`", f"# written by dfe {_version()}"]
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


def _version() -> str:
    return __version__


# ---------------------------------------------------------------------------- the plan

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
        lines.append(f"estimated time: {duration(self.estimate_s)} with {_workers(c)} extract worker(s) "
                     "(first run; finished inputs and up-to-date steps are skipped on reruns)")
        return "\n".join(lines)


def duration(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _workers(c: StudyConfig) -> int:
    return c.workers or default_workers()


# rates measured on the 2-core development machine (README: Performance, and bench/study.py)
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
    workers = max(1, min(_workers(config), len(media) or 1))
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


# ---------------------------------------------------------------------------- step records

def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class StepRecords:
    """``steps.json``: per step, the hash of its inputs when it last finished, and its seconds."""

    def __init__(self, outdir: Path):
        self.path = outdir / "steps.json"
        try:
            self.data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except ValueError:
            self.data = {}

    def up_to_date(self, step: str, key: str, outputs: list[Path]) -> bool:
        rec = self.data.get(step)
        return bool(rec) and rec.get("key") == key and all(Path(p).exists() for p in outputs)

    def done(self, step: str, key: str, seconds: float) -> None:
        self.data[step] = {"key": key, "seconds": round(seconds, 3), "finished": time.time(), "dfe": _version()}
        tmp = self.path.with_name(".steps.json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)


def manifest_fingerprint(folder: Path, outputs: list[str]) -> str:
    """Hash of the given outputs' ids and content hashes, from the folder's run manifest."""
    keep = {str(Path(o)) for o in outputs}
    manifest = Manifest(folder)
    try:
        recs = sorted((r.id, r.output_sha256) for r in manifest.records() if r.output and str(Path(r.output)) in keep)
    finally:
        manifest.close()
    return fingerprint(recs)


# ---------------------------------------------------------------------------- progress

class StudyProgress:
    """One line per step with the study's ETA (estimates rescaled by how the finished steps went)."""

    def __init__(self, plan: StudyPlan, say: Callable[[str], None]):
        self.plan, self.say = plan, say
        self.start = time.perf_counter()
        self.spent: dict[str, float] = {}
        self.estimates = {s.name: s.estimate_s for s in plan.steps}

    def begin(self, step: str) -> float:
        i = STEPS.index(step) + 1
        done_est = sum(self.estimates[s] for s in self.spent)
        pace = (sum(self.spent.values()) / done_est) if done_est > 1 else 1.0
        left = sum(v for k, v in self.estimates.items() if k not in self.spent) * min(max(pace, 0.2), 5.0)
        self.say(f"[{i}/{len(STEPS)}] {step}: ~{duration(self.estimates[step] * pace)}; "
                 f"elapsed {duration(time.perf_counter() - self.start)}, study ETA {duration(left)}")
        return time.perf_counter()

    def end(self, step: str, began: float, note: str = "") -> float:
        seconds = time.perf_counter() - began
        self.spent[step] = seconds
        self.say(f"      {step} {note or 'done'} in {seconds:.1f} s")
        return seconds


# ---------------------------------------------------------------------------- labels

def normalise_labels(config: StudyConfig, table_ids: dict[str, str]) -> pd.DataFrame:
    """The user's labels keyed by table id. The first column may hold table ids, media paths
    (absolute, or relative to the labels file or the working folder) or file names;
    ``table_ids`` maps each extracted input's resolved path to its table id."""
    lab = read_labels(config.labels)
    require_columns(lab, [config.target] + ([config.group] if config.group else []), config.labels)
    key = lab.columns[0]
    ids = set(table_ids.values())
    by_name: dict[str, list[str]] = {}
    for path, tid in table_ids.items():
        by_name.setdefault(Path(path).name, []).append(tid)
        by_name.setdefault(Path(path).stem, []).append(tid)
    base = Path(config.labels).resolve().parent
    out = []
    for value in lab[key].astype(str):
        if value in ids:
            out.append(value)
            continue
        tid = None
        for root in (base, Path.cwd()):
            tid = table_ids.get(str((root / value).resolve()))
            if tid:
                break
        if tid is None and len(by_name.get(Path(value).name, [])) == 1:
            tid = by_name[Path(value).name][0]
        out.append(tid or value)
    lab = lab.copy()
    lab[key] = out
    lab = lab.rename(columns={key: "video"})
    if lab["video"].duplicated().any():
        dup = lab.loc[lab["video"].duplicated(), "video"].iloc[0]
        raise StudyError(f"labels file {config.labels} has more than one row for the table {dup!r}")
    return lab


# ---------------------------------------------------------------------------- prediction

def score_ci(preds: pd.DataFrame, task: str, name: str, n: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """A feature set's primary score over its pooled out-of-fold predictions, with a bootstrap 95%
    CI over videos (resampled with replacement)."""
    p = preds[preds["features"] == name]
    key = "macro_f1" if task == "classification" else "ccc"
    y, pred = p["y"].to_numpy(), p["pred"].to_numpy()
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n):
        idx = rng.integers(0, len(p), len(p))
        boots.append(scores(task, y[idx], pred[idx])[key])
    return float(scores(task, y, pred)[key]), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def run_prediction(tables: list[Path], labels_csv: Path, config: StudyConfig, outdir: Path,
                   dictionary, dynamic: bool) -> dict:
    """Grouped CV of dfe's bag of tokens (and events) against every baseline the tables allow:
    blendshape functionals and words, psi functionals, OpenFace-style AU functionals, and each
    ``config.baselines`` table. With ``config.fit`` the dictionary is refitted in every outer fold
    on that fold's training people only."""
    refit = {"codebook_size": config.codebook_size, "levels": config.levels, "epochs": config.epochs} if config.fit else None
    data = load_task(tables, labels_csv, config.target, config.group, need_tokens=not refit)
    codebook_size = config.codebook_size if refit else dictionary.codebook_size
    columns = set.intersection(*(set(v.columns) for v in data.videos))
    sets = feature_sets(codebook_size, None, columns, dynamic)
    if all(has_action_units(v) for v in data.videos):
        sets[AU_NAME] = ActionUnitFunctionals()
    for path in config.baselines:
        sets[f"baseline: {Path(path).stem}"] = UserFeatures(read_video_features(path))
    runs = [cross_validate(data, codebook_size, config.folds, config.seed + r, None, False, refit, dynamic, sets=sets)
            for r in range(config.seeds)]
    fold_scores = pd.concat([f.assign(seed=config.seed + r) for r, (f, _) in enumerate(runs)], ignore_index=True)
    preds = pd.concat([p.assign(seed=config.seed + r) for r, (_, p) in enumerate(runs)], ignore_index=True)
    summary = summarise_folds(fold_scores)
    key = "macro_f1" if data.task == "classification" else "ccc"
    rows = []
    for name in summary["features"]:
        s = summary[summary["features"] == name].iloc[0]
        value, lo, hi = score_ci(preds, data.task, name, seed=config.seed)
        diff = (None, None, None) if name == DFE_NAME else paired_bootstrap(preds, data.task, DFE_NAME, name, seed=config.seed)
        rows.append({"features": name, f"{key}_fold_mean": float(s[f"{key}_mean"]), f"{key}_fold_std": float(s[f"{key}_std"]),
                     f"{key}_seed_std": float(s.get(f"{key}_seed_std", 0.0)), key: value, "ci95_low": lo, "ci95_high": hi,
                     "dfe_minus_this": diff[0], "dfe_minus_this_ci95_low": diff[1], "dfe_minus_this_ci95_high": diff[2],
                     "dynamic": name in ("dfe events (dynamic)", "dfe tokens + events", "blendshape events (dynamic AU-like)")})
    outdir.mkdir(parents=True, exist_ok=True)
    fold_scores.to_csv(outdir / "fold_scores.csv", index=False)
    preds.to_csv(outdir / "predictions.csv", index=False)
    pd.DataFrame(rows).to_csv(outdir / "comparison.csv", index=False)
    chance = 1 / len(np.unique(data.y)) if data.task == "classification" else 0.0
    statement = tokenizer_statement(data, refit, dictionary)
    result = {"task": data.task, "metric": key, "chance": chance, "videos": len(data.videos),
              "groups": int(len(np.unique(data.groups))), "folds": int(fold_scores["fold"].nunique()),
              "seeds": list(range(config.seed, config.seed + config.seeds)), "dynamic": dynamic,
              "classes": sorted(map(str, np.unique(data.y))) if data.task == "classification" else None,
              "tokens": statement, "refit_per_fold": refit, "warnings": list(data.warnings), "rows": rows}
    (outdir / "prediction.json").write_text(json.dumps(result, indent=1, default=float))
    return result


# ---------------------------------------------------------------------------- the driver

@dataclass
class StudyResult:
    outdir: Path
    results: dict
    index: Path
    steps: dict[str, str]  # step -> "ran" | "up to date" | "resumed"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _crash_env(step: str):
    """Tests: ``DFE_STUDY_CRASH_IN=encode:N`` sets the runner's crash point during that step only."""
    spec = os.environ.get(CRASH_ENV, "")
    name, _, n = spec.partition(":")
    if name == step and n:
        os.environ["DFE_CRASH_AT"] = f"after:{n}"
    else:
        os.environ.pop("DFE_CRASH_AT", None) if spec else None


def run_study(config: StudyConfig, say: Callable[[str], None] = _say, progress: bool = False) -> StudyResult:
    """Run (or resume) the whole study into ``config.output``; returns its results."""
    import warnings

    with warnings.catch_warnings():  # pandas' notices about wide tables are not findings
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        return _run_study(config, say, progress)


@dataclass
class _StudyRun:
    """What the steps of one study run share: the plan, the records, the display, and each step's
    outputs as the later steps need them."""

    config: StudyConfig
    plan: StudyPlan
    records: StepRecords
    bar: StudyProgress
    say: Callable[[str], None]
    progress: bool
    state: dict[str, str] = field(default_factory=dict)  # step -> ran | up to date | resumed | skipped
    outcomes: list = field(default_factory=list)  # extract outcomes
    tables: list[Path] = field(default_factory=list)
    tables_fp: str = ""
    table_ids: dict[str, str] = field(default_factory=dict)
    labels: pd.DataFrame | None = None
    labels_csv: Path | None = None
    labels_fp: str = ""
    model_path: Path | None = None
    tok: Tokenizer | None = None
    encoded: list[Path] = field(default_factory=list)
    encoded_fp: str = ""
    enc_failed: list = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)  # encoded tables with more than one row
    prediction: dict = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return self.config.out


def _check_inputs(config: StudyConfig, plan: StudyPlan) -> None:
    if not plan.media:
        raise StudyError("no images or videos found in: " + ", ".join(config.media))
    if not Path(config.labels).is_file():
        raise StudyError(f"labels file {config.labels} not found")
    for b in config.baselines:
        if not Path(b).is_file():
            raise StudyError(f"baseline features file {b} not found")


def _run_study(config: StudyConfig, say: Callable[[str], None], progress: bool) -> StudyResult:
    config = config.resolved()
    plan = plan_study(config)
    _check_inputs(config, plan)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "study.toml").write_text(toml_text(config))
    run = _StudyRun(config, plan, StepRecords(config.out), StudyProgress(plan, say), say, progress)
    for step in (_extract_step, _dictionary_step, _encode_step, _events_step, _atlas_step, _evaluate_step,
                 _task_step):
        step(run)
    return _report_step(run)


def _extract_step(run: _StudyRun) -> None:
    """1. extract (the run manifest resumes per input); then the labels, normalised to table ids."""
    config, out = run.config, run.out
    t = run.bar.begin("extract")
    _crash_env("extract")
    report = extract(run.plan.media, out / "tables", ExtractOptions(face_model=config.face_model, fps=config.fps,
                                                                    progress=run.progress),
                     workers=min(_workers(config), len(run.plan.media)))
    run.outcomes = outcomes = report.results
    skipped = sum(o.status == "skipped" for o in outcomes)
    run.tables = sorted(Path(o.output) for o in outcomes if o.status in ("ok", "skipped") and o.output)  # order: not the run's
    if not run.tables:
        raise StudyError("no input gave a table: " + "; ".join(f"{o.input}: {o.error}" for o in report.failed[:3]))
    redone = sum(o.status == "ok" for o in outcomes)  # failed inputs are retried on every run; they redo no table
    run.state["extract"] = "up to date" if not redone else ("resumed" if skipped else "ran")
    run.bar.end("extract", t, f"{len(outcomes) - skipped - len(report.failed)} extracted, "
                                f"{skipped} up to date, {len(report.failed)} failed")
    run.tables_fp = manifest_fingerprint(out / "tables", [str(p) for p in run.tables])
    manifest = Manifest(out / "tables")
    try:
        run.table_ids = {r.input: r.id for r in manifest.records()}
    finally:
        manifest.close()
    run.labels = normalise_labels(config, run.table_ids)
    run.labels_csv = out / "labels.csv"
    run.labels.to_csv(run.labels_csv, index=False)
    run.labels_fp = file_sha256(run.labels_csv)


def _dictionary_step(run: _StudyRun) -> None:
    """2. the dictionary: fitted on the study's tables, or the given/bundled model copied."""
    config = run.config
    t = run.bar.begin("dictionary")
    run.model_path = model_path = run.out / "dictionary.dfe"
    source = config.model or str(starter_model_path())
    key = fingerprint("fit", run.tables_fp, config.codebook_size, config.levels, config.epochs, config.seed) \
        if config.fit else fingerprint("reuse", file_sha256(source))
    if run.records.up_to_date("dictionary", key, [model_path]):
        run.state["dictionary"] = "up to date"
    else:
        if config.fit:
            tok = fit_tables([str(p) for p in run.tables], progress=run.progress, codebook_size=config.codebook_size,
                             levels=config.levels, epochs=config.epochs, seed=config.seed)
            tok.save(model_path)
        else:
            Tokenizer.load(source)  # a damaged file stops here, with its sentence
            shutil.copyfile(source, model_path)
        run.state["dictionary"] = "ran"
    run.tok = Tokenizer.load(model_path)
    run.records.done("dictionary", key, run.bar.end("dictionary", t, run.state["dictionary"]))


def _encode_step(run: _StudyRun) -> None:
    """3. encode (run manifest)."""
    t = run.bar.begin("encode")
    _crash_env("encode")
    frames = sum(table_rows(p) for p in run.tables)
    enc = encode_corpus(run.tables, run.tok, run.out / "encoded", progress=run.progress,
                        workers=min(_workers(run.config), len(run.tables)) if frames > 20000 else 1)
    os.environ.pop("DFE_CRASH_AT", None)
    run.encoded = sorted(Path(o.output) for o in enc if o.status in ("ok", "skipped") and o.output)
    run.enc_failed = [o for o in enc if o.status == "failed"]
    run.state["encode"] = "up to date" if not any(o.status == "ok" for o in enc) else "ran"
    run.bar.end("encode", t, f"{sum(o.status == 'ok' for o in enc)} encoded, "
                             f"{sum(o.status == 'skipped' for o in enc)} up to date")
    run.encoded_fp = manifest_fingerprint(run.out / "encoded", [str(p) for p in run.encoded])


def _events_step(run: _StudyRun) -> None:
    """4. events (run manifest); timelines only for videos (a photo has no time)."""
    t = run.bar.begin("events")
    run.videos = [p for p in run.encoded if table_rows(p) > 1]
    photos = [p for p in run.encoded if table_rows(p) <= 1]
    ev = []
    for group, timeline in ((run.videos, True), (photos, False)):
        if group:
            ev += events_corpus(group, run.tok, run.out / "events", EventOptions(), timeline=timeline,
                                progress=run.progress)
    run.state["events"] = "up to date" if not any(o.status == "ok" for o in ev) else "ran"
    run.bar.end("events", t, f"{len(ev)} tables")


def _atlas_step(run: _StudyRun) -> None:
    """5. the atlas of the dictionary's codes, with the labels' log-odds."""
    config, out = run.config, run.out
    t = run.bar.begin("atlas")
    key = fingerprint(run.tok.fingerprint(), run.encoded_fp, run.labels_fp, config.target, config.atlas_codes)
    if run.records.up_to_date("atlas", key, [out / "atlas" / "index.html"]):
        run.state["atlas"] = "up to date"
    else:
        if (out / "atlas").is_dir():
            shutil.rmtree(out / "atlas")
        build_atlas(run.tok, out / "atlas", tables=[str(p) for p in run.encoded], labels=run.labels_csv,
                    label_column=config.target, max_codes=config.atlas_codes, progress=run.progress,
                    model_path=str(run.model_path))
        run.state["atlas"] = "ran"
    run.records.done("atlas", key, run.bar.end("atlas", t, run.state["atlas"]))


def _evaluation_groups(run: _StudyRun) -> pd.DataFrame:
    """Each encoded table's group (its person, or itself when unlabelled) and label, for evaluate."""
    config, lab = run.config, run.labels.set_index("video")
    ids = [p.stem for p in run.encoded]

    def known(v: str, column: str | None) -> bool:
        return bool(column) and v in lab.index and pd.notna(lab.at[v, column])

    return pd.DataFrame({"video": ids,
                         "group": [str(lab.at[v, config.group]) if known(v, config.group) else v for v in ids],
                         "label": [str(lab.at[v, config.target]) if known(v, config.target) else "(no label)"
                                   for v in ids]})


def _evaluate_step(run: _StudyRun) -> None:
    """6. evaluate (fidelity, diversity, retrieval); a design too small to evaluate is skipped, said why."""
    out = run.out
    t = run.bar.begin("evaluate")
    groups_csv = out / "evaluate_groups.csv"
    _evaluation_groups(run).to_csv(groups_csv, index=False)
    key = fingerprint(run.tok.fingerprint(), run.encoded_fp, file_sha256(groups_csv), run.config.seed)
    if run.records.up_to_date("evaluate", key, [out / "evaluate" / "report.json"]):
        run.state["evaluate"] = "up to date"
    else:
        shutil.rmtree(out / "evaluate", ignore_errors=True)
        try:
            evaluate([str(p) for p in run.encoded], run.tok, out / "evaluate",
                     EvaluateOptions(labels=groups_csv, label_column="label", group_column="group",
                                     seed=run.config.seed, progress=run.progress))
            run.state["evaluate"] = "ran"
        except ValueError as e:  # too few frames or groups: the study goes on, the report says why
            (out / "evaluate").mkdir(exist_ok=True)
            (out / "evaluate" / "skipped.json").write_text(json.dumps({"reason": str(e)}))
            run.state["evaluate"] = "skipped"
            run.say(f"      evaluate skipped: {e}")
    if run.state["evaluate"] != "skipped":
        run.records.done("evaluate", key, run.bar.end("evaluate", t, run.state["evaluate"]))
    else:
        run.bar.end("evaluate", t, "skipped")


def _task_step(run: _StudyRun) -> None:
    """7. prediction: tokens against the baselines, cross-validated by person."""
    config, out = run.config, run.out
    t = run.bar.begin("task")
    labelled = set(run.labels.dropna(subset=[config.target])["video"].astype(str))
    dynamic = config.dynamic == "on" or (config.dynamic == "auto" and any(p.stem in labelled for p in run.videos))
    task_tables = run.tables if config.fit else run.encoded
    key = fingerprint(run.tok.fingerprint() if not config.fit else run.tables_fp,
                      run.encoded_fp if not config.fit else "", run.labels_fp, config.target, config.group,
                      config.folds, config.seeds, config.seed, dynamic, config.codebook_size, config.levels,
                      config.epochs, [file_sha256(b) for b in config.baselines])
    if run.records.up_to_date("task", key, [out / "task" / "prediction.json"]):
        run.state["task"] = "up to date"
        run.prediction = json.loads((out / "task" / "prediction.json").read_text())
        run.records.done("task", key, run.bar.end("task", t, run.state["task"]))
        return
    shutil.rmtree(out / "task", ignore_errors=True)
    try:
        run.prediction = run_prediction([Path(p) for p in task_tables], run.labels_csv, config, out / "task",
                                        run.tok, dynamic)
        run.state["task"] = "ran"
        run.records.done("task", key, run.bar.end("task", t, run.state["task"]))
    except ValueError as e:  # a design that cannot be cross-validated: the report says why
        run.prediction = {"skipped": str(e)}
        run.state["task"] = "skipped"
        run.say(f"      prediction skipped: {e}")
        run.bar.end("task", t, "skipped")


def _report_step(run: _StudyRun) -> StudyResult:
    """8. results.json and index.html."""
    t = run.bar.begin("report")
    results = collect_results(run)
    results["timing"] = {**{k: round(v, 2) for k, v in run.bar.spent.items()}, "steps": run.state}
    (run.out / "results.json").write_text(json.dumps(results, indent=1, default=_json_default))
    index = write_index(run.out, results)
    run.bar.end("report", t)
    run.state["report"] = "ran"
    return StudyResult(run.out, results, index, run.state)


def _json_default(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, (np.ndarray,)):
        return v.tolist()
    return str(v)


# ---------------------------------------------------------------------------- results

def dictionary_saw(tok, ids: list[str]) -> list[str]:
    """The tested table ids the dictionary was trained or validated on (by id)."""
    seen = tok.seen_groups
    if seen is None:
        seen = set(map(str, (tok.summary.data or {}).get("videos", [])))
    return sorted(set(ids) & seen)


def face_model_statement(config: StudyConfig, ids: list[str]) -> dict:
    return face_model_provenance(ids, config.face_model)


def _input_rows(outcomes, enc_failed, table_ids: dict) -> list[dict]:
    """One row per input of the corpus (failed ones with their sentence), then per failed encode."""
    id_of = {str(Path(k)): v for k, v in table_ids.items()}
    rows = [{"input": str(o.input), "id": o.id or id_of.get(str(o.input), ""), "kind": media_kind(o.input) or "other",
             "status": "failed" if o.status == "failed" else "ok", "frames": int(o.frames), "faces": int(o.faces),
             "error": o.error} for o in sorted(outcomes, key=lambda o: str(o.input))]
    return rows + [{"input": str(o.input), "id": o.id, "kind": "table", "status": "failed", "frames": 0, "faces": 0,
                    "error": f"encode: {o.error}"} for o in enc_failed]


def _label_of(lab: pd.DataFrame, vid: str, column: str | None) -> str | None:
    """The labels file's value of ``column`` for table ``vid`` as text, or None where it has none."""
    if not column or vid not in lab.index or pd.isna(lab.at[vid, column]):
        return None
    return str(lab.at[vid, column])


def _videos_and_label_codes(run: _StudyRun, ok_ids: list[str], lab: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    """Per-table rows of the report, and each label's most typical codes (smoothed log-odds of each
    code's frames per label over every labelled frame; descriptive, nothing held out)."""
    tok, target = run.tok, run.config.target
    frames_tok, frames_lab, per_video = [], [], []
    for vid in ok_ids:
        path = run.out / "encoded" / f"{vid}.parquet"
        if not path.is_file():
            continue
        df = read_table(path)
        ok = df[df["success"] == 1]
        toks = ok[token_columns(ok)].to_numpy()
        ev_path, timeline = run.out / "events" / f"{vid}.events.parquet", run.out / "events" / f"{vid}.timeline.png"
        label = _label_of(lab, vid, target)
        per_video.append({"id": vid, "frames": int(len(df)), "faces": int(len(ok)),
                          "events": int(len(pd.read_parquet(ev_path))) if ev_path.is_file() else 0,
                          "timeline": f"events/{timeline.name}" if timeline.is_file() else None, "label": label})
        if label is not None and len(toks):
            frames_tok.append(toks)
            frames_lab += [label] * len(toks)
    if not frames_tok:
        return per_video, []
    lo = label_log_odds(np.vstack(frames_tok), np.asarray(frames_lab), tok.codebook_size)
    best = (lo[(lo["count"] > 0) & (lo["log_odds"] > 0)].sort_values(["label", "log_odds"], ascending=[True, False])
            .groupby("label").head(4))
    names = name_codes(tok, sorted(set(best["code"].astype(int))))
    return per_video, [{"label": str(r.label), "code": int(r.code), "log_odds": float(r.log_odds), "frames": int(r.count),
                        "name": names[int(r.code)].name} for r in best.itertuples()]


def _top_codes(atlas: Path, n: int = 12) -> list[dict]:
    """The atlas's most used codes, from its code cards."""
    cards = [json.loads(p.read_text()) for p in sorted((atlas / "codes").glob("code_*.json"))]
    cards.sort(key=lambda c: (-int(c["usage"]), int(c["code"])))
    return [{"code": c["code"], "name": c["name"], "level": c["level"], "usage": c["usage"], "peak_cm": c.get("peak_cm"),
             "action_units": [a["au"] for a in c.get("action_units", [])]} for c in cards[:n]]


def _dictionary_summary(config: StudyConfig, tok, saw: list[str]) -> dict:
    s = tok.summary
    return {"source": "fitted on the study's tables" if config.fit else (config.model or "the bundled starter dictionary"),
            "file": "dictionary.dfe", "fingerprint": tok.fingerprint(), "codebook_size": tok.codebook_size,
            "levels": tok.levels, "train_frames": s.n_train, "val_frames": s.n_val, "val_cosine": s.val_cosine,
            "dead_code_share": s.dead_code_share, "seed": tok.config.seed,
            "saw_tested_inputs": len(saw), "saw_tested_ids": saw[:50]}


def _provenance(config: StudyConfig, tok, ev: dict | None, ev_skipped: str | None, prediction: dict, saw: list[str],
                n_tested: int, saw_labelled: list[str], n_labelled: int, face: dict, dictionary: dict) -> dict:
    """What each figure of the report was measured on, and what was held out of it."""
    if not ev:
        fidelity = f"Not measured: {ev_skipped}."
    else:
        held = ev["split"]
        fidelity = (f"Held out by {held['by']}: {held['n_test_groups']} groups, {held['test_frames']} frames "
                    f"(seed {held['seed']}); the baselines were fitted on the {held['train_frames']} training frames. "
                    + (f"The study's dictionary had seen held-out videos ({ev['refit']['reason']}), so a dictionary of "
                       "its configuration was fitted on the training split and scored instead."
                       if ev.get("refit") else "The dictionary never saw a held-out video."))
    if "skipped" in prediction:
        pred = f"Not run: {prediction['skipped']}."
    else:
        seeds = prediction["seeds"]
        pred = (f"{prediction['folds']}-fold grouped CV ({'by ' + config.group if config.group else 'each video its own group'}),"
                f" {len(seeds)} fold assignment(s) (seeds {seeds[0]}..{seeds[-1]});"
                " every model (and feature fit: blendshape words, events) saw only the training people of its fold. "
                f"Tokens: {prediction['tokens']}.")
        pred += (" No tested person's frames shaped the codes." if config.fit else
                 f" The dictionary that made those tokens saw {len(saw_labelled)} of the {n_labelled} tested inputs.")
    return {
        "corpus": "Counts from the run manifest of tables/ (every input, failed ones with their sentence).",
        "dictionary": (f"The dictionary ({dictionary['source']}) was trained on {tok.summary.n_train:,} frames"
                       + (f", including {len(saw)} of the {n_tested} study inputs" if saw else
                          ", none of them from this study's inputs") + ". Atlas, top codes, per-label codes and timelines "
                       "describe the whole corpus with it (descriptive, nothing held out). " + face["statement"]),
        "fidelity": fidelity + " " + face["statement"],
        "prediction": pred + " " + face["statement"],
        "per_label_codes": ("Smoothed log-odds of each code's frames within each label vs the rest, over every labelled "
                            "frame with the study's dictionary: a description of the corpus, not a held-out result."),
        "events": "dfe events with default options (gap 0.1 s, min duration 0.1 s, hold 0.9) on the encoded tables.",
    }


def collect_results(run: _StudyRun) -> dict:
    """results.json: every number of the study, with each figure's provenance."""
    config, tok, out = run.config, run.tok, run.out
    inputs = _input_rows(run.outcomes, run.enc_failed, run.table_ids)
    ok_ids = [i["id"] for i in inputs if i["status"] == "ok"]
    lab = run.labels.set_index("video")
    people = sorted({g for i in ok_ids if (g := _label_of(lab, i, config.group)) is not None})
    per_video, per_label = _videos_and_label_codes(run, ok_ids, lab)
    ev_path = out / "evaluate" / "report.json"
    ev = json.loads(ev_path.read_text()) if ev_path.is_file() else None
    ev_skipped = None if ev else json.loads((out / "evaluate" / "skipped.json").read_text())["reason"]
    saw = dictionary_saw(tok, ok_ids)
    labelled_ids = [i for i in ok_ids if _label_of(lab, i, config.target) is not None]
    face = face_model_statement(config, ok_ids)
    dictionary = _dictionary_summary(config, tok, saw)
    provenance = _provenance(config, tok, ev, ev_skipped, run.prediction, saw, len(ok_ids),
                             sorted(set(saw) & set(labelled_ids)), len(labelled_ids), face, dictionary)
    methods = methods_paragraph(config, run.plan, inputs, people, dictionary, ev, run.prediction, face)
    return {"dfe_version": _version(), "config": asdict(config),
            "corpus": {"inputs": inputs, "n_inputs": len(inputs), "n_ok": len(ok_ids),
                       "n_failed": sum(i["status"] == "failed" for i in inputs),
                       "videos": sum(i["kind"] == "video" and i["status"] == "ok" for i in inputs),
                       "photos": sum(i["kind"] == "image" and i["status"] == "ok" for i in inputs),
                       "people": len(people), "frames": int(sum(i["frames"] for i in inputs)),
                       "faces": int(sum(i["faces"] for i in inputs)), "labelled": len(labelled_ids)},
            "dictionary": dictionary, "top_codes": _top_codes(out / "atlas"), "per_label_codes": per_label,
            "fidelity": ({"split": ev["split"], "refit": ev.get("refit"), "rows": ev["fidelity"],
                          "level_curve_cosine": ev["level_curve_cosine"], "diversity": ev["diversity"],
                          "retrieval": ev["retrieval"]} if ev else {"skipped": ev_skipped}),
            "prediction": run.prediction, "videos": per_video, "face_model": face,
            "provenance": provenance, "methods": methods}


def methods_paragraph(config: StudyConfig, plan: StudyPlan, inputs, people, dictionary, ev, prediction, face) -> str:
    ok = [i for i in inputs if i["status"] == "ok"]
    dict_text = (f"a dictionary of {dictionary['codebook_size']} codes shared by {dictionary['levels']} residual levels "
                 f"fitted on the study's frames (seed {config.seed}, {config.epochs} epochs)" if config.fit else
                 f"{dictionary['source']} ({dictionary['codebook_size']} codes, {dictionary['levels']} levels)")
    text = (f"Faces in {len(ok)} inputs ({sum(i['kind'] == 'video' for i in ok)} videos, {sum(i['kind'] == 'image' for i in ok)} "
            f"photos{f', {len(people)} people' if people else ''}; {sum(i['faces'] for i in ok):,} frames with a face) were "
            f"tracked with MediaPipe Face Landmarker and turned into identity-free 3D expression displacements (psi, cm on "
            f"MediaPipe's canonical face) with dfe {_version()} (Discrete Facial Encoding, arXiv 2510.01662). "
            f"{face['statement']} Frames were tokenized with {dict_text}. ")
    if ev:
        fid = ev["fidelity"][0]
        text += (f"Fidelity was measured on {ev['split']['test_frames']} frames of {ev['split']['n_test_groups']} held-out "
                 f"groups ({ev['split']['by']}): held-out cosine {fid['cosine_mean']:.3f} with all levels"
                 + (" (a dictionary of the same configuration refitted on the training split, as the study's dictionary had "
                    "seen the held-out videos)" if ev.get("refit") else "") + ". ")
    if "skipped" in prediction:
        return text + f"Prediction was not run: {prediction['skipped']}."
    rows = {r["features"]: r for r in prediction["rows"]}
    key = prediction["metric"]
    best = rows.get(DFE_NAME, {})
    return text + (
        f"{config.target!r} was predicted per input with "
        f"{'logistic regression' if prediction['task'] == 'classification' else 'ridge regression'} "
        f"(regularisation chosen by inner CV) in {prediction['folds']}-fold cross-validation grouped by "
        f"{config.group or 'input'}, repeated over {len(prediction['seeds'])} fold assignment(s); "
        + ("the dictionary was refitted in every outer fold on that fold's training people only. " if config.fit else
           f"tokens came from the study's dictionary ({prediction['tokens']}). ")
        + f"dfe's bag of tokens reached {key} {best.get(key, float('nan')):.3f} (95% CI {best.get('ci95_low', float('nan')):.3f}"
        f"-{best.get('ci95_high', float('nan')):.3f}, bootstrap over inputs), against "
        + "; ".join(f"{n} {r[key]:.3f} (dfe minus this {r['dfe_minus_this']:+.3f}, paired 95% CI "
                    f"{r['dfe_minus_this_ci95_low']:+.3f}..{r['dfe_minus_this_ci95_high']:+.3f})"
                    for n, r in rows.items() if n != DFE_NAME)
        + f"; chance {prediction['chance']:.2f}.")
