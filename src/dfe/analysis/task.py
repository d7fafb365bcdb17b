"""A prediction task from per-video tables: join labels, cross-validate feature sets by person, compare them with paired bootstraps, write the report (dfe evaluate-task)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
import numpy as np
import pandas as pd
from dfe.errors import DfeError
from dfe.extraction.identity import face_model_provenance
from dfe.analysis.labels import group_codes, numeric_if_numbers, read_labels, read_video_features, require_columns
from dfe.analysis.rows import BAG_NAME, GAIN_BAG
from dfe.table import table_column_names, BLENDSHAPE_COLUMNS, find_tables, read_table, token_columns, video_id, window_id, window_video
from dfe.analysis.reports import bar_chart, markdown_table
from dfe.analysis.features import BagOfTokens, BlendshapeBoW, BlendshapeFunctionals, EventFeatures, PsiFunctionals, UserFeatures
from dfe.analysis.events import duration
from dfe.analysis.elan import eaf_labels, is_eaf_labels
from dfe.tokens.tokenizer import Tokenizer
from dfe.tokens.config import TokenizerConfig
from dfe.tokens.tables import encode_table, table_psi
from dfe.progress import Progress

log = logging.getLogger(__name__)

TASKS = ("classification", "regression")
MAX_CLASSES_OF_NUMBERS = 10  # a numeric target with more distinct values (whole numbers) is a regression target


class TaskError(DfeError, ValueError):
    """A labels file, table set or option a prediction task cannot use."""


@dataclass
class VideoFeatures:
    """Another tool's output summarised per video, a baseline beside the tokens (built by
    :mod:`dfe.analysis.baselines`): ``table``'s first column is the video id (a table's stem), the others
    numbers; ``notes``: sentences for the report (which tables it has no row for)."""

    name: str
    table: pd.DataFrame
    notes: list[str]


def keep_videos_with(data: TaskData, baselines: list[VideoFeatures], window: float | None = None) -> TaskData:
    """Only the videos every baseline has a row for, so every feature set is scored on the same
    videos (the paired CIs need that); the baselines' notes join the report's warnings."""
    if window:
        raise TaskError("--baseline summarises whole videos: it cannot be combined with --window")
    have = [set(b.table.iloc[:, 0].astype(str)) for b in baselines]
    keep = np.array([i for i, vid in enumerate(data.ids) if all(vid in h for h in have)], dtype=int)
    if not len(keep):
        raise TaskError(f"no labelled video has a row in every baseline ({', '.join(b.name for b in baselines)}): "
                        "the baseline files are matched to the tables by file stem")
    notes = [n for b in baselines for n in b.notes]
    for n in notes:
        log.warning(n)
    return replace(data, videos=[data.videos[i] for i in keep], ids=[data.ids[i] for i in keep], y=data.y[keep],
                   groups=data.groups[keep], warnings=data.warnings + notes)


def split_windows(df: pd.DataFrame, seconds: float) -> list[pd.DataFrame]:
    """Cut one video's table into consecutive windows of ``seconds`` (pseudo-videos)."""
    if not seconds:
        return [df]
    idx = np.floor(df["timestamp"].to_numpy() / seconds).astype(int)
    out = []
    for w in np.unique(idx):
        part = df[idx == w].copy()
        part["window"] = int(w)
        part["video"] = window_id(df["video"].iloc[0], w)
        out.append(part)
    return out


def _seconds(path) -> float:
    """A table's length in seconds from 0 (where ELAN's time starts) to its last frame's end."""
    t = read_table(path, columns=["timestamp"])["timestamp"].to_numpy(float)
    return float(t.min() + duration(t)) if len(t) else 0.0


@dataclass
class TaskData:
    videos: list[pd.DataFrame]
    ids: list[str]
    y: np.ndarray
    groups: np.ndarray
    task: str  # classification | regression
    warnings: list[str]
    task_reason: str = "chosen by the caller"  # why ``task`` (the caller's choice, or :func:`infer_task`'s rule)


def infer_task(y) -> tuple[str, str]:
    """Classification or regression for a target whose task the caller did not give, and the
    clause saying why. The rule: a numeric target with a non-integer value, or with more than
    ``MAX_CLASSES_OF_NUMBERS`` (10) distinct whole numbers (an age, a score), is regression;
    anything else (text, or at most 10 distinct whole numbers such as 0/1 or a 1-7 rating) is
    classification."""
    values = pd.Series(y)
    distinct = values.nunique()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "classification", f"the target is text ({distinct} classes)"
    if (values.astype(float) % 1 != 0).any():
        return "regression", "the target has non-integer numbers"
    if distinct > MAX_CLASSES_OF_NUMBERS:
        return "regression", f"the target has {distinct} distinct whole numbers (more than {MAX_CLASSES_OF_NUMBERS})"
    return "classification", (f"the target has {distinct} distinct whole numbers (at most {MAX_CLASSES_OF_NUMBERS}: "
                               "read as classes)")


def decide_task(y, target: str, task: str | None) -> tuple[str, str]:
    """The task a target is predicted as, and why: ``task`` when given (checked), else :func:`infer_task`."""
    if task is None:
        task, reason = infer_task(y)
        log.info("%s: %s (%s; give task= to choose)", target, task, reason)
        return task, reason
    if task not in TASKS:
        raise TaskError(f"task must be 'classification' or 'regression', not {task!r}")
    if task == "regression" and not pd.api.types.is_numeric_dtype(pd.Series(y)):
        raise TaskError(f"the target {target!r} holds text (e.g. {y[0]!r}): regression needs numbers")
    return task, "chosen by the caller"


def input_aliases(paths: list[Path]) -> dict[str, str]:
    """{input media path, as written and resolved: table id} from each table's ``file`` column."""
    out: dict[str, str] = {}
    for path in paths:
        if "file" not in table_column_names(path):
            continue
        files = read_table(path, columns=["file"])["file"].dropna().unique()
        for f in files[:1]:
            out[str(f)] = out[str(Path(f).resolve())] = video_id(path)
    return out


def load_task(tables: list, labels: str | Path, target: str, group: str | None = None,
              id_column: str | None = None, window: float | None = None, task: str | None = None,
              need_tokens: bool = True) -> TaskData:
    """Join per-video tables with a labels file (one row per video: id, target, optional group).
    ``task``: classification or regression; None: :func:`infer_task` decides from the labels.
    ``need_tokens=False``: tables without tok_* columns are fine (tokens are refit per fold)."""
    if is_eaf_labels(labels):  # ELAN files: the tier named by ``target`` gives each window's label
        durations = {video_id(p): _seconds(p) for p in find_tables(tables)}
        lab = eaf_labels(labels, target, window, durations)
    else:  # ids and groups stay text ("001" is not 1); a target that is all numbers becomes numeric
        lab = read_labels(labels)
        if target in lab.columns:
            lab[target] = numeric_if_numbers(lab[target])
    id_col = id_column or lab.columns[0]
    require_columns(lab, [id_col, target] + ([group] if group else []), labels)
    lab[id_col] = lab[id_col].astype(str)
    # a label file may name the input media instead of the table ids: each table's `file` column holds its input
    if any("/" in v or "\\" in v for v in lab[id_col]):
        aliases = input_aliases(find_tables(tables))
        lab[id_col] = [aliases.get(str(Path(v).resolve()), v) if ("/" in v or "\\" in v) else v for v in lab[id_col]]
    lab = lab.dropna(subset=[target])
    if lab[id_col].duplicated().any():
        dup = lab.loc[lab[id_col].duplicated(), id_col].iloc[0]
        raise TaskError(f"labels file {labels} has more than one row for {dup!r}: give each video (or window) one row")
    lab = lab.set_index(id_col)
    # ids "video@k" label window k of a video (see split_windows); plain ids label a whole video
    labelled = {window_video(i) for i in lab.index}
    paths = {video_id(p): p for p in find_tables(tables)}
    warnings = []
    no_table = sorted(labelled - set(paths))
    no_label = sorted(set(paths) - labelled)
    if no_table:
        warnings.append(f"{len(no_table)} labelled videos have no table: {', '.join(no_table[:5])}")
    if no_label:
        warnings.append(f"{len(no_label)} tables have no label and are left out: {', '.join(no_label[:5])}")
    videos, ids, ys, gs = [], [], [], []
    for vid in sorted(set(paths) & labelled):
        df = read_table(paths[vid])
        df = pd.concat([pd.Series(vid, index=df.index, name="video"), df], axis=1)
        if need_tokens and not token_columns(df):
            raise TaskError(f"{paths[vid]} has no tokens: run `dfe encode` first")
        if (df["success"] == 1).sum() == 0:
            warnings.append(f"{vid}: no face in any frame, left out")
            continue
        for part in split_windows(df, window or 0):
            part_id = str(part["video"].iloc[0])
            key = part_id if part_id in lab.index else vid
            if (part["success"] == 1).sum() == 0 or key not in lab.index:
                continue
            videos.append(part)
            ids.append(part_id)
            ys.append(lab.loc[key, target])
            gs.append(lab.loc[key, group] if group else vid)
    if not videos:
        if not paths:
            raise TaskError(f"no per-frame tables found in {', '.join(map(str, tables))}")
        raise TaskError(f"no video has both a table and a label: the ids in {labels} (e.g. {', '.join(sorted(labelled)[:3])}) "
                        f"match none of the table ids (e.g. {', '.join(sorted(paths)[:3])}); the first column of the "
                        "labels file must hold table ids (file stems) or the input files' paths")
    y = np.asarray(ys)
    task, reason = decide_task(y, target, task)
    for w in warnings:
        log.warning(w)
    return TaskData(videos, ids, y, np.asarray(gs).astype(str), task, warnings, reason)


def ccc(y: np.ndarray, p: np.ndarray) -> float:
    """Lin's concordance correlation coefficient."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    cov = np.mean((y - y.mean()) * (p - p.mean()))
    return float(2 * cov / (y.var() + p.var() + (y.mean() - p.mean()) ** 2 + 1e-12))


def scores(task: str, y, pred, proba=None, classes=None) -> dict:
    from sklearn import metrics

    if task == "classification":
        out = {"macro_f1": metrics.f1_score(y, pred, average="macro"), "accuracy": metrics.accuracy_score(y, pred)}
        if proba is not None and len(np.unique(y)) > 1:
            try:
                out["auroc"] = (metrics.roc_auc_score(y, proba[:, 1]) if proba.shape[1] == 2
                                else metrics.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
            except ValueError:
                out["auroc"] = float("nan")
        return out
    from scipy.stats import pearsonr

    r = pearsonr(y, pred)[0] if np.std(pred) > 0 and np.std(y) > 0 else float("nan")
    return {"ccc": ccc(y, pred), "mae": metrics.mean_absolute_error(y, pred), "pearson_r": float(r)}


def feature_sets(codebook_size: int, user_table: pd.DataFrame | None = None,
                 columns: set | None = None, dynamic: bool = False) -> dict:
    """dfe's bag of tokens and the baselines the tables allow (``columns``: those of the tables;
    without blendshape or psi_* columns, as in FLAME tables, those baselines are left out).
    ``dynamic``: add dfe's event features, alone and beside the bag, and blendshape events."""
    from sklearn.pipeline import make_union

    has_blendshapes = columns is None or set(BLENDSHAPE_COLUMNS) <= columns

    def bag():
        return BagOfTokens(codebook_size, weighting="log", norm="l2")

    sets = {BAG_NAME: bag()}
    if dynamic:
        sets["dfe events (dynamic)"] = EventFeatures(codebook_size)
        sets["dfe tokens + events"] = make_union(bag(), EventFeatures(codebook_size))
    if has_blendshapes:
        sets["blendshape functionals (AU-like)"] = BlendshapeFunctionals()
        sets["blendshape BoW (k-means)"] = BlendshapeBoW(n_words=codebook_size)
    if has_blendshapes and dynamic:
        sets["blendshape events (dynamic AU-like)"] = EventFeatures(source="blendshapes")
    if columns is None or "psi_0" in columns:
        sets["psi functionals"] = PsiFunctionals()
    if user_table is not None:
        sets["user features"] = UserFeatures(user_table)
    return sets


def make_model(task: str, features, seed: int = 0):
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler

    if task == "classification":
        head = LogisticRegressionCV(Cs=np.logspace(-2, 3, 6).tolist(), cv=3, max_iter=2000, random_state=seed)
    else:
        head = RidgeCV(alphas=np.logspace(-2, 4, 7))
    return make_pipeline(features, MaxAbsScaler(), head)


def check_folds(data: TaskData, n_folds: int) -> int:
    n_groups = len(np.unique(data.groups))
    if n_groups < 2:
        raise TaskError(f"only {n_groups} group(s): person-independent CV needs at least 2")
    if len(data.videos) < 4:
        raise TaskError(f"only {len(data.videos)} labelled videos: too few for cross-validation")
    folds = min(n_folds, n_groups)
    if data.task == "classification":
        classes, counts = np.unique(data.y, return_counts=True)
        if len(classes) < 2:
            raise TaskError(f"target has one class only ({classes[0]})")
        for c in classes:
            n_g = len(np.unique(data.groups[data.y == c]))
            if n_g < 2:
                raise TaskError(f"class {c} occurs in only {n_g} group: it cannot appear in both training "
                                "and test folds; collect more people or merge classes")
        folds = min(folds, min(len(np.unique(data.groups[data.y == c])) for c in classes))
    if folds < 2:
        raise TaskError("too few videos per class for 2 folds")
    if folds < n_folds:
        log.warning("using %d folds (not enough groups for %d)", folds, n_folds)
    return folds


def refit_fold_tokens(videos: list[pd.DataFrame], train: np.ndarray, tokenizer_config: dict,
                      seed: int = 0) -> list[pd.DataFrame]:
    """A tokenizer fitted on the training videos of one fold only, and every video encoded with it,
    so the tokens of the test videos come from a model that never saw them. On small folds the
    codebook shrinks to a quarter of the training frames (at least 8 codes)."""
    frames = pd.concat([videos[i] for i in train], ignore_index=True)
    ok = frames[frames["success"] == 1]
    kind = str(ok["psi_kind"].iloc[0]) if "psi_kind" in ok.columns else "geometry"
    config = {"seed": seed, **tokenizer_config, "psi_kind": kind}
    config["codebook_size"] = int(min(config.get("codebook_size", 256), max(8, len(ok) // 4)))
    tok = Tokenizer.fit(table_psi(ok, kind), groups=ok["video"].to_numpy(), progress=False, **config)
    return [encode_table(v, tok) for v in videos]


def cross_validate(data: TaskData, codebook_size: int, n_folds: int = 5, seed: int = 0,
                   user_table: pd.DataFrame | None = None, progress: bool = True,
                   refit_tokenizer: dict | None = None, dynamic: bool = False,
                   sets: dict | None = None, extra_sets: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Grouped (person-independent) k-fold CV of dfe BoW and each baseline under one protocol.

    ``refit_tokenizer``: None (the tables' tokens), or the settings of a tokenizer fitted per fold on
    the training groups (e.g. ``{"codebook_size": 64}``; ``{}``: the defaults), whose tokens replace
    the tables' own. ``dynamic``: add the
    event features (:func:`feature_sets`). ``sets``: name -> transformer, instead of the defaults;
    ``extra_sets``: name -> transformer, beside them.
    Returns (per-fold scores, out-of-fold predictions).
    """
    import warnings

    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold


    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")  # API notices, not findings
    folds = check_folds(data, n_folds)
    splitter = (StratifiedGroupKFold(folds, shuffle=True, random_state=seed) if data.task == "classification"
                else GroupKFold(folds, shuffle=True, random_state=seed))
    # folds follow the videos a group holds, never the text of its id ('61' and '061' split alike)
    splits = list(splitter.split(np.zeros(len(data.y)), data.y, group_codes(data.ids, data.groups)))
    rows, preds = [], []
    columns = set.intersection(*(set(v.columns.tolist()) for v in data.videos))
    if sets is None:
        sets = feature_sets(codebook_size, user_table, columns, dynamic)
    sets = {**sets, **(extra_sets or {})}
    skipped = [n for n in feature_sets(codebook_size, user_table, dynamic=dynamic) if n not in sets]
    if skipped:
        data.warnings.append(f"left out (the tables lack their columns): {', '.join(skipped)}")
    bar = Progress(len(sets) * len(splits), "evaluate", "fit", enabled=progress)
    for f, (tr, te) in enumerate(splits):
        videos = data.videos if refit_tokenizer is None else refit_fold_tokens(data.videos, tr, refit_tokenizer, seed)
        for name, feats in sets.items():
            bar.note(f"fold {f + 1}/{len(splits)}: {name}")
            model = make_model(data.task, feats, seed)
            model.fit([videos[i] for i in tr], data.y[tr])
            X_te = [videos[i] for i in te]
            pred = model.predict(X_te)
            proba = model.predict_proba(X_te) if data.task == "classification" else None
            rows.append({"features": name, "fold": f, **scores(data.task, data.y[te], pred, proba, model.classes_ if proba is not None else None)})
            for j, i in enumerate(te):
                row = {"features": name, "fold": f, "video": data.ids[i], "group": data.groups[i],
                       "y": data.y[i], "pred": pred[j]}
                if proba is not None:
                    row.update({f"p_{c}": float(p) for c, p in zip(model.classes_, proba[j])})
                preds.append(row)
            bar.update(1)
    bar.close()
    return pd.DataFrame(rows), pd.DataFrame(preds)


def summarise_folds(fold_scores: pd.DataFrame) -> pd.DataFrame:
    """Per feature set: each metric's mean and std over the folds of every seed (``_mean``,
    ``_std``), and the spread (std) of the per-seed means (``_seed_std``; 0 with one seed)."""
    metrics_cols = [c for c in fold_scores.columns if c not in ("features", "fold", "seed")]
    summary = fold_scores.groupby("features", sort=False)[metrics_cols].agg(["mean", "std"])
    summary.columns = [f"{m}_{s}" for m, s in summary.columns]
    if "seed" in fold_scores.columns:
        per_seed = fold_scores.groupby(["features", "seed"], sort=False)[metrics_cols].mean()
        spread = per_seed.groupby(level="features", sort=False).std(ddof=0)
        summary = summary.join(spread.add_suffix("_seed_std"))
    return summary.reset_index()


def primary_metric(task: str, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The primary metric of each row of (resamples, items) arrays: macro-F1 over the classes present
    in that row's labels or predictions (as scikit-learn's ``f1_score(average="macro")``), or CCC."""
    if task != "classification":
        y, pred = y.astype(float), pred.astype(float)
        cov = ((y - y.mean(1, keepdims=True)) * (pred - pred.mean(1, keepdims=True))).mean(1)
        return 2 * cov / (y.var(1) + pred.var(1) + (y.mean(1) - pred.mean(1)) ** 2 + 1e-12)
    f1, present = [], []
    for c in np.unique(np.concatenate([y.ravel(), pred.ravel()])):
        tp = ((y == c) & (pred == c)).sum(1)
        wrong = ((y == c) != (pred == c)).sum(1)  # false positives + false negatives
        f1.append(np.where(tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0))
        present.append(tp + wrong > 0)
    f1, present = np.stack(f1, 1), np.stack(present, 1)
    return (f1 * present).sum(1) / np.maximum(present.sum(1), 1)


def paired_bootstrap(preds: pd.DataFrame, task: str, a: str, b: str, n: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """95% CI of (primary metric of a - of b) over videos resampled with replacement."""
    key_cols = ["seed", "video"] if "seed" in preds.columns else ["video"]
    pa = preds[preds["features"] == a].set_index(key_cols).sort_index()
    pb = preds[preds["features"] == b].set_index(key_cols).loc[pa.index]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pa), (n, len(pa)))  # n resamples of the pooled predictions, all at once
    y, a_pred, b_pred = pa["y"].to_numpy(), pa["pred"].to_numpy(), pb["pred"].to_numpy()
    diffs = primary_metric(task, y[idx], a_pred[idx]) - primary_metric(task, y[idx], b_pred[idx])
    full = float(primary_metric(task, y[None], a_pred[None])[0] - primary_metric(task, y[None], b_pred[None])[0])
    return float(full), float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


@dataclass
class TaskOptions:
    """How :func:`evaluate_task` runs the experiment (the options of ``dfe evaluate-task``)."""

    group: str | None = None  # labels column naming each video's person; None: each video its own group
    n_folds: int = 5  # outer grouped CV folds (fewer when the groups or a class's groups are fewer)
    seed: int = 0  # first seed of the fold assignment
    seeds: int = 5  # the whole CV is repeated with seeds seed .. seed + seeds - 1
    window: float | None = None  # cut videos into windows of this many seconds (pseudo-videos)
    task: str | None = None  # classification | regression; None: infer_task's rule
    dynamic: bool = False  # add event features (dfe's and the blendshapes')
    user_features: str | Path | None = None  # a per-video feature CSV scored as another baseline
    baselines: list[VideoFeatures] = field(default_factory=list)  # other tools' per-video features
    refit_tokenizer: bool = False  # fit a tokenizer per fold on the training groups (the tables' tokens unused)
    tokenizer_settings: dict = field(default_factory=dict)  # with refit_tokenizer: Tokenizer.fit's settings
    progress: bool = True

    def __post_init__(self):
        if self.tokenizer_settings and not self.refit_tokenizer:
            raise TaskError("tokenizer_settings are for the per-fold tokenizer: give them with refit_tokenizer=True")
        try:
            TokenizerConfig.check_knobs(self.tokenizer_settings)
        except ValueError as e:
            raise TaskError(f"tokenizer_settings has {e}") from None
        if self.n_folds < 2 or self.seeds < 1:
            raise TaskError(f"n_folds must be at least 2 and seeds at least 1, not {self.n_folds} and {self.seeds}")


def gain_bag(model, codebook_size: int) -> dict:
    """``{GAIN_BAG: the bag of the model's actions, each token weighted by its intensity}`` for a
    shape-gain model whose tokens the tables carry (``model.intensities``), else ``{}`` (no model, a
    per-fold refit, an RVQ-VAE or a duck-typed model without intensities)."""
    gains = getattr(model, "intensities", None)
    return {} if gains is None else {GAIN_BAG: BagOfTokens(codebook_size, norm="l2", gains=gains)}


def vocabulary_size(data: TaskData, options: TaskOptions, model=None) -> tuple[int, str]:
    """The codes the bags count, and where that number comes from: the per-fold tokenizer's
    ``codebook_size`` (refit), else the codebook of ``model`` (the tokenizer that encoded the
    tables), else dfe's default (``TokenizerConfig().codebook_size``). It is never read off the
    tokens; a table with a token beyond it is an error naming the table."""
    if options.refit_tokenizer:
        size = int(options.tokenizer_settings.get("codebook_size", TokenizerConfig().codebook_size))
        return size, f"{size} codes (the per-fold tokenizer's codebook, smaller on small folds)"
    if model is not None:
        size, source = model.codebook_size, "the codebook of the model that encoded the tables"
    else:
        size, source = TokenizerConfig().codebook_size, "dfe's default codebook size, no model given"
    for vid, df in zip(data.ids, data.videos):
        largest = int(df[token_columns(df)].max().max())
        if largest >= size:
            raise TaskError(f"table {window_video(vid)} has token {largest}, beyond the {size} codes of {source}: "
                            "give the model that encoded the tables (--model)")
    return size, f"{size} codes ({source})"


def evaluate_task(tables: list, labels: str | Path, target: str, outdir: str | Path,
                  options: TaskOptions | None = None, model=None) -> pd.DataFrame:
    """The whole experiment: CV of dfe vs baselines -> comparison.csv/.md, predictions.csv, bar plot.
    ``labels`` may be ELAN files (:func:`dfe.analysis.elan.eaf_labels`, ``target`` = the tier).
    ``options``: :class:`TaskOptions`. ``model``: the tokenizer that encoded the tables (a
    :class:`~dfe.tokens.tokenizer.Tokenizer`): its codebook sizes the bags, and the report says
    whether it saw the videos it is tested on.

    ``options.refit_tokenizer``: fit a tokenizer with ``options.tokenizer_settings`` per fold on the
    training groups (see :func:`cross_validate`) instead of using the tables' tokens. The whole CV
    is repeated with fold assignments from ``options.seeds`` seeds; the summary gives the mean over
    seeds, the spread of the seeds' means, and paired CIs over the pooled predictions.
    ``options.baselines``: other tools' per-video features (:mod:`dfe.analysis.baselines`), scored
    beside the tokens on the videos every one of them covers."""
    options = options or TaskOptions()
    data = load_task(tables, labels, target, options.group, window=options.window, task=options.task,
                     need_tokens=not options.refit_tokenizer)
    if options.baselines:
        data = keep_videos_with(data, options.baselines, options.window)
    extra = {b.name: UserFeatures(b.table) for b in options.baselines}
    codebook_size, vocabulary = vocabulary_size(data, options, model)
    extra = {**gain_bag(model if not options.refit_tokenizer else None, codebook_size), **extra}
    user = read_video_features(options.user_features) if options.user_features else None
    refit = options.tokenizer_settings if options.refit_tokenizer else None
    runs = [cross_validate(data, codebook_size, options.n_folds, options.seed + r, user, options.progress, refit,
                           options.dynamic, extra_sets=extra) for r in range(options.seeds)]
    fold_scores = pd.concat([f.assign(seed=options.seed + r) for r, (f, _) in enumerate(runs)], ignore_index=True)
    preds = pd.concat([p.assign(seed=options.seed + r) for r, (_, p) in enumerate(runs)], ignore_index=True)
    summary = summarise_folds(fold_scores)
    ci = [(np.nan, np.nan, np.nan) if name == BAG_NAME else paired_bootstrap(preds, data.task, BAG_NAME, name, seed=options.seed)
          for name in summary["features"]]
    key = "macro_f1" if data.task == "classification" else "ccc"
    summary[f"dfe_minus_this_{key}"] = [c[0] for c in ci]
    summary["ci95_low"] = [c[1] for c in ci]
    summary["ci95_high"] = [c[2] for c in ci]
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    summary.to_csv(outdir / "comparison.csv", index=False)
    preds.to_csv(outdir / "predictions.csv", index=False)
    fold_scores.to_csv(outdir / "fold_scores.csv", index=False)
    n_groups = len(np.unique(data.groups))
    grouping = f"by {options.group}" if options.group else "each video its own group"
    seeds = f"{options.seeds} seed{'s' if options.seeds > 1 else ''} ({options.seed}..{options.seed + options.seeds - 1})"
    header = (f"# dfe evaluate-task: {target} ({data.task})\n\n{data.task.capitalize()}: {data.task_reason}. "
              f"{len(data.videos)} videos, {n_groups} groups ({grouping}), {fold_scores['fold'].nunique()}-fold "
              f"grouped CV, repeated with {seeds} for the fold assignment; in each, every video is tested once, "
              "by a model that never saw its group. Tokens: "
              + tokenizer_statement(data, options.refit_tokenizer, model)
              + f"; bags of {vocabulary}. Face model (if the tables were extracted with the bundled one): "
              + face_model_provenance([window_video(i) for i in data.ids])["statement"].rstrip(".")
              + f". Mean (std) over the folds of all seeds; `_seed_std` is the spread of the seeds' means (how much "
              f"one fold assignment moves the result); the last columns give dfe minus each baseline on {key} "
              f"with a paired bootstrap 95% CI over the pooled predictions of all seeds.\n\n")
    warn = "".join(f"- warning: {w}\n" for w in data.warnings)
    (outdir / "comparison.md").write_text(header + (warn + "\n" if warn else "") + markdown_table(summary) + "\n")
    chance = 1 / len(np.unique(data.y)) if data.task == "classification" else 0.0
    bar_chart(outdir / "comparison.png", summary["features"], summary[f"{key}_mean"],
              errors=summary[f"{key}_std"].fillna(0), chance=chance,
              chance_label=f"chance ({chance:.2f}{': 1 / classes' if key == 'macro_f1' else ''})",
              xlabel=f"{key} (mean ± std over folds)", title=f"predicting {target}")
    return summary


def tokenizer_statement(data: TaskData, refit_tokenizer: bool, model) -> str:
    """Whether the tokens of the test videos come from a tokenizer that saw them (``refit_tokenizer``:
    true when a tokenizer was fitted per fold)."""
    if refit_tokenizer:
        return "a tokenizer fitted per fold on the training groups only (the test groups were unseen)"
    if model is None:
        return ("as written in the tables; this report cannot tell whether their tokenizer saw the test videos "
                "(pass --model to check, or --refit-tokenizer to fit one per fold)")
    seen = model.seen_groups
    videos = {window_video(i) for i in data.ids}
    if seen is None:
        return "as written in the tables, by a model that does not record what it was trained on (dfe 0.2 or older)"
    overlap = sorted(videos & seen)
    if not overlap:
        return f"as written in the tables, by a tokenizer that saw none of the {len(videos)} videos"
    return (f"as written in the tables, by a tokenizer trained on {len(overlap)} of the {len(videos)} videos tested "
            f"here ({', '.join(overlap[:10])}{' ...' if len(overlap) > 10 else ''}): the dfe rows are not held out "
            "at the tokenizer level; use --refit-tokenizer for that")
