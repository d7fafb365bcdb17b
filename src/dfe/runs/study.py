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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from dfe.extraction.pipeline import ExtractOptions
from dfe.runs.manifest import Manifest, file_sha256
from dfe.analysis.labels import read_labels, read_video_features, require_columns
from dfe.analysis.task import (cross_validate, feature_sets, gain_bag, load_task, paired_bootstrap, scores, summarise_folds,
                               tokenizer_statement)
from dfe.analysis.features import ActionUnitFunctionals, UserFeatures
from dfe.table import au_version, has_action_units, some_names, tables_by_version, window_video
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
from dfe.runs.study_plan import (AU_NAME, DFE_NAME, STEPS, StudyConfig, StudyError, StudyPlan, duration, plan_study,
                                 study_workers, toml_text)
from dfe.runs.study_results import collect_results
from dfe.version import __version__

log = logging.getLogger(__name__)

CRASH_ENV = "DFE_STUDY_CRASH_IN"  # tests only: "encode:2" ends the process after 2 encoded tables


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
        self.data[step] = {"key": key, "seconds": round(seconds, 3), "finished": time.time(), "dfe": __version__}
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


def action_unit_baseline(data) -> tuple[dict, str | None]:
    """The OpenFace-style AU baseline for the study's videos: ``({AU_NAME: ...}, None)`` when every
    table has AU columns made one way, ``({}, None)`` when some have none, and ``({}, sentence)`` when
    they were made two ways (dfe 0.4-0.6's ICT shapes vs 0.7's measured responses: their scales
    differ, so the baseline is left out and the sentence, naming the tables, goes into the report)."""
    if not all(has_action_units(v) for v in data.videos):
        return {}, None
    versions = {window_video(vid): au_version(df, vid) for vid, df in zip(data.ids, data.videos)}
    by_version = tables_by_version(dict(sorted(versions.items())))
    if len(by_version) == 1:
        return {AU_NAME: ActionUnitFunctionals()}, None
    parts = "; ".join(f"{some_names(names)} AU version {v}" for v, names in by_version.items())
    return {}, (f"the action-unit baseline is left out: these tables' action units were made two ways ({parts}); "
                "re-extract the older ones with `dfe extract --overwrite`")


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
    sets = {**feature_sets(codebook_size, None, columns, dynamic), **gain_bag(None if refit else dictionary, codebook_size)}
    au_sets, au_warning = action_unit_baseline(data)
    sets.update(au_sets)
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
              "tokens": statement, "refit_per_fold": refit, "rows": rows,
              "warnings": list(data.warnings) + ([au_warning] if au_warning else [])}
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
                     workers=min(study_workers(config), len(run.plan.media)))
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
                        workers=min(study_workers(run.config), len(run.tables)) if frames > 20000 else 1)
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
    rows = {p: table_rows(p) for p in run.encoded}
    run.videos = [p for p in run.encoded if rows[p] > 1]
    photos = [p for p in run.encoded if rows[p] <= 1]
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



















