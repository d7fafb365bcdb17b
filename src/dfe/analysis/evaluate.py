"""Measuring the encoding: fidelity, diversity and retrieval of dfe tokens against AU-like coding.

All numbers are computed on held-out videos (split by video, or by person with a labels file).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dfe.analysis.labels import group_codes, groups_for, read_labels, require_columns
from dfe.analysis.reports import agg_pyplot, markdown_table, save_figure
from dfe.extraction.face import BLENDSHAPE_NAMES
from dfe.extraction.identity import face_model_provenance
from dfe.progress import Progress
from dfe.table import blendshapes_array, load_tables
from dfe.tokens.residual_kmeans import ResidualKMeans, nearest_centres
from dfe.tokens.tables import table_psi
from dfe.tokens.tokenizer import Tokenizer, codebook_stats, cosine_rows, split_groups

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- fidelity

def _summary(cos: np.ndarray, mse: np.ndarray) -> dict:
    return {"cosine_mean": float(np.mean(cos)), "cosine_median": float(np.median(cos)),
            "cosine_p10": float(np.percentile(cos, 10)), "mse_mean": float(np.mean(mse)),
            "mse_median": float(np.median(mse))}


def _score(recon: np.ndarray, psi: np.ndarray) -> dict:
    """Cosine leaves out frames whose psi is exactly zero (a neutral reference photo itself:
    cosine is undefined there); MSE keeps every frame."""
    moving = np.linalg.norm(psi, axis=1) > 1e-6
    cos = cosine_rows(recon[moving], psi[moving]) if moving.any() else np.zeros(1)
    return _summary(cos, np.mean((recon - psi) ** 2, axis=1))


def residual_quantize(psi: np.ndarray, codebook: np.ndarray, levels: int) -> np.ndarray:
    """Greedy residual quantization of psi with a fixed codebook (a baseline without learning)."""
    out = np.zeros_like(psi)
    resid = psi.copy()
    for _ in range(levels):
        idx = nearest_centres(resid, codebook)
        out += codebook[idx]
        resid -= codebook[idx]
    return out


def pca_bits(train: np.ndarray, test: np.ndarray, components: int, bits: int) -> np.ndarray:
    """PCA with ``components`` dimensions, each uniformly quantized to ``bits`` bits over the training range."""
    from sklearn.decomposition import PCA

    pca = PCA(components, random_state=0).fit(train)
    z_train, z = pca.transform(train), pca.transform(test)
    lo, hi = np.percentile(z_train, 0.5, axis=0), np.percentile(z_train, 99.5, axis=0)
    levels = 2**bits - 1
    q = np.round((np.clip(z, lo, hi) - lo) / np.maximum(hi - lo, 1e-9) * levels)
    return pca.inverse_transform(q / levels * (hi - lo) + lo)


def fidelity(tok: Tokenizer, psi_train: np.ndarray, psi_test: np.ndarray,
             blend_train: np.ndarray | None = None, blend_test: np.ndarray | None = None,
             seed: int = 0, tokens: np.ndarray | None = None) -> pd.DataFrame:
    """One row per encoding: how well it rebuilds held-out psi (cosine and MSE per frame)."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.linear_model import Ridge

    N, K = tok.codebook_size, tok.levels
    bits = int(np.ceil(np.log2(N)))
    rng = np.random.default_rng(seed)
    tokens = tok.encode(psi_test) if tokens is None else tokens
    rows = [{"encoding": f"dfe tokens (K={K})", "bits": K * bits, **_score(tok.decode(tokens), psi_test)}]
    for k in range(1, K):
        rows.append({"encoding": f"dfe tokens, levels 1..{k}", "bits": k * bits,
                     **_score(tok.decode_prefix(tokens, k), psi_test)})
    if blend_train is not None and blend_test is not None:
        ridge = Ridge(alpha=1.0).fit(blend_train, psi_train)
        rows.append({"encoding": "52 blendshapes (AU-like) + ridge", "bits": 52 * 32,
                     **_score(ridge.predict(blend_test), psi_test)})
    rkm = ResidualKMeans(N, K, random_state=seed).fit(psi_train)
    rows.append({"encoding": f"residual k-means {K} x {N}", "bits": K * bits,
                 **_score(rkm.inverse_transform(rkm.transform(psi_test)), psi_test),
                 "train_cosine_mean": _score(rkm.inverse_transform(rkm.transform(psi_train)), psi_train)["cosine_mean"]})
    rows[0]["train_cosine_mean"] = _score(tok.decode(tok.encode(psi_train)), psi_train)["cosine_mean"]
    rows.append({"encoding": f"PCA {K} x {bits} bits", "bits": K * bits,
                 **_score(pca_bits(psi_train, psi_test, min(K, psi_train.shape[1], len(psi_train)), bits), psi_test)})
    km = MiniBatchKMeans(min(N, len(psi_train)), random_state=seed, n_init=3).fit(psi_train)
    rows.append({"encoding": f"k-means, 1 of {N} per frame", "bits": bits,
                 **_score(km.cluster_centers_[km.predict(psi_test)], psi_test)})
    scale = np.median(np.linalg.norm(psi_train, axis=1)) / K
    gaussian = rng.normal(size=(N, psi_train.shape[1]))
    gaussian *= scale / np.linalg.norm(gaussian, axis=1, keepdims=True)
    rows.append({"encoding": f"random codebook RVQ (K={K})", "bits": K * bits,
                 **_score(residual_quantize(psi_test, gaussian, K), psi_test)})
    sampled = psi_train[rng.choice(len(psi_train), size=min(N, len(psi_train)), replace=False)] / K
    rows.append({"encoding": f"sampled-frames codebook RVQ (K={K})", "bits": K * bits,
                 **_score(residual_quantize(psi_test, sampled, K), psi_test)})
    return pd.DataFrame(rows)


def level_curve(tok: Tokenizer, psi: np.ndarray, tokens: np.ndarray | None = None) -> list[float]:
    """Mean reconstruction cosine using levels 1..k, for k = 1..K."""
    tokens = tok.encode(psi) if tokens is None else tokens
    moving = np.linalg.norm(psi, axis=1) > 1e-6
    return [float(cosine_rows(tok.decode_prefix(tokens, k)[moving], psi[moving]).mean()) for k in range(1, tok.levels + 1)]


# ---------------------------------------------------------------------------- diversity

def distinct_per_1000(rows: np.ndarray) -> float:
    """Distinct rows (token combinations, active-unit sets) per 1,000 frames."""
    if len(rows) == 0:
        return 0.0
    return len({r.tobytes() for r in np.ascontiguousarray(rows)}) / len(rows) * 1000


def diversity(tokens: np.ndarray, blend: np.ndarray | None, codebook_size: int, threshold: float = 0.5) -> dict:
    stats = codebook_stats(tokens, codebook_size)
    out = {
        "frames": int(len(tokens)),
        "distinct_token_combinations_per_1000": distinct_per_1000(tokens),
        "perplexity_per_level": [codebook_stats(tokens[:, [k]], codebook_size)["perplexity"] for k in range(tokens.shape[1])],
        "codes_never_used_share": stats["dead_code_share"],
    }
    if blend is not None:
        out["distinct_binarised_blendshape_sets_per_1000"] = distinct_per_1000((blend[:, 1:] > threshold).astype(np.uint8))
        out["blendshape_threshold"] = threshold
    return out


# ---------------------------------------------------------------------------- retrieval

def retrieval(tokens: np.ndarray, blend: np.ndarray, psi: np.ndarray, k: int = 5,
              labels: np.ndarray | None = None, max_queries: int = 2000, seed: int = 0) -> pd.DataFrame:
    """For each query, its k nearest frames by token overlap and by blendshape distance; score =
    mean psi cosine between query and retrieved (and precision@k of the same label)."""
    rng = np.random.default_rng(seed)
    n = len(tokens)
    queries = rng.choice(n, size=min(n, max_queries), replace=False)
    unit = psi / np.maximum(np.linalg.norm(psi, axis=1, keepdims=True), 1e-12)
    res = {"tokens (overlap)": [], "blendshapes (euclidean)": []}
    prec = {key: [] for key in res}
    jitter = rng.random(n) * 1e-3  # random tie-break among equal overlaps
    for q in queries:
        overlap = (tokens == tokens[q]).sum(1) + jitter
        overlap[q] = -1
        dist = np.linalg.norm(blend - blend[q], axis=1)
        dist[q] = np.inf
        for key, nn in (("tokens (overlap)", np.argsort(-overlap)[:k]), ("blendshapes (euclidean)", np.argsort(dist)[:k])):
            res[key].append(float((unit[nn] @ unit[q]).mean()))
            if labels is not None:
                prec[key].append(float((labels[nn] == labels[q]).mean()))
    rows = []
    for key in res:
        row = {"retrieval": key, "k": k, "queries": len(queries), "psi_cosine_mean": float(np.mean(res[key]))}
        if labels is not None:
            row["precision_at_k"] = float(np.mean(prec[key]))
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- the report

@dataclass(frozen=True)
class EvaluateOptions:
    """How ``dfe evaluate`` splits and scores: ``labels`` (a CSV, first column the video) gives
    ``label_column`` for label precision@k and, with ``group_column``, a split by person;
    ``test_fraction`` of the groups are held out (``seed``); ``k`` neighbours for retrieval;
    ``refit``: when the model saw a held-out video, fit one of its configuration on the training
    split (True) or refuse (False)."""

    labels: str | Path | None = None
    label_column: str | None = None
    group_column: str | None = None
    test_fraction: float = 0.3
    seed: int = 0
    k: int = 5
    refit: bool = True
    progress: bool = False


@dataclass
class EvaluationData:
    """The successful frames of the tables, their videos and groups, and (with labels) each frame's label."""

    frames: pd.DataFrame
    videos: np.ndarray
    groups: np.ndarray
    split_by: str
    frame_labels: np.ndarray | None


def evaluation_data(tables: list, options: EvaluateOptions) -> EvaluationData:
    df = load_tables(tables)
    df = df[df["success"] == 1].reset_index(drop=True)
    if len(df) < 20:
        raise ValueError(f"only {len(df)} frames with a face: too few to evaluate")
    videos = df["video"].astype(str).to_numpy()
    groups, split_by, frame_labels = videos, "video", None
    labels = options.labels
    if labels:
        lab = read_labels(labels)
        if options.group_column:
            groups = groups_for(df["video"], lab, options.group_column, labels).to_numpy()
            split_by = f"person ({options.group_column})"
        col = options.label_column or next(c for c in lab.columns[1:] if c != options.group_column)
        require_columns(lab, [col], labels)
        frame_labels = df["video"].astype(str).map(lab.set_index(lab.columns[0])[col]).to_numpy()
        if pd.isna(frame_labels).all():
            raise ValueError(f"labels file {labels}: its ids (e.g. {', '.join(map(str, lab.iloc[:3, 0]))}) match none of "
                             f"the tables' videos (e.g. {', '.join(sorted(set(videos))[:3])})")
    return EvaluationData(df, videos, groups, split_by, frame_labels)


def held_out_tokenizer(tok: Tokenizer, psi: np.ndarray, videos: np.ndarray, train: np.ndarray, test_videos: list[str],
                       options: EvaluateOptions) -> tuple[Tokenizer, list[str] | None, dict | None]:
    """The tokenizer to score: ``tok`` when it never saw a held-out video, else (``options.refit``)
    one of its configuration fitted on the training split. Returns it, the overlap and what was refit."""
    overlap = check_overlap(tok, test_videos)
    if overlap is not None and not overlap:
        return tok, overlap, None
    why = ("the model does not record the videos it was trained on (dfe 0.2 or older)" if overlap is None else
           f"the model was trained on {len(overlap)} of the {len(test_videos)} held-out videos")
    if not options.refit:
        raise ValueError(f"{why}, so its held-out scores would not be held out: evaluate without --no-refit "
                         "(a tokenizer of the same configuration is then fitted on the training split) or hold out other videos")
    config = {k: v for k, v in tok.config.__dict__.items() if k != "dim"}
    log.warning("%s: fitting a tokenizer of its configuration on the %d training frames first (about %s)",
                why, len(train), _duration(expected_fit_seconds(tok, len(train))))
    refit = Tokenizer.fit(psi[train], groups=videos[train], progress=options.progress, **config)
    return refit, overlap, {"reason": why, "config": config, "train_frames": int(len(train)), "model_file": "refit_model.dfe",
                            "note": "the model file was not scored: a tokenizer of its configuration fitted on the training split was"}


def evaluate(tables: list, model: str | Path | Tokenizer, outdir: str | Path,
             options: EvaluateOptions | None = None) -> dict:
    """Fidelity, diversity and retrieval on held-out videos -> report.md, report.json, plots.

    If the model was trained (or validated) on any held-out video, or does not say what it saw,
    a tokenizer of the same configuration is fitted on the training split and evaluated instead
    (``options.refit``, the default); ``refit=False`` refuses with a ValueError. report.json lists
    the ``overlap_groups`` and what was refit."""
    options = options or EvaluateOptions()
    tok = model if isinstance(model, Tokenizer) else Tokenizer.load(model)
    data = evaluation_data(tables, options)
    df, videos, groups, seed = data.frames, data.videos, data.groups, options.seed
    held = held_out_split(videos, groups, tok, data.split_by, options.test_fraction, seed)
    train, test = held.train, held.test
    psi = table_psi(df, tok.config.psi_kind)
    test_videos = sorted(set(videos[test]))
    tok, overlap, refit_info = held_out_tokenizer(tok, psi, videos, train, test_videos, options)
    geo = table_psi(df, "geometry") if "psi_0" in df.columns else psi
    has_blend = set(BLENDSHAPE_NAMES) <= set(df.columns)
    blend = blendshapes_array(df) if has_blend else None
    notes = [] if has_blend else ["the tables have no blendshape columns (e.g. FLAME input): the blendshape "
                                  "baselines and the retrieval comparison are skipped"]

    steps = Progress(4, "evaluate", "step", enabled=options.progress)
    steps.note("fidelity (ridge baselines on the training split)")
    tokens_test = tok.encode(psi[test])
    fid = fidelity(tok, geo[train], geo[test], blend[train], blend[test], seed, tokens_test) \
        if tok.config.psi_kind == "geometry" and has_blend else fidelity(tok, psi[train], psi[test], None, None, seed, tokens_test)
    steps.update(1)
    steps.note("level curve and diversity")
    curve = level_curve(tok, psi[test], tokens_test)
    div = diversity(tokens_test, blend[test] if has_blend else None, tok.codebook_size)
    steps.update(1)
    steps.note("retrieval")
    labels_test = None if data.frame_labels is None else data.frame_labels[test]
    ret = (retrieval(tokens_test, blend[test], geo[test], options.k, labels_test, seed=seed)
           if has_blend else pd.DataFrame(columns=["retrieval", "k", "queries", "psi_cosine_mean"]))
    steps.update(1)
    steps.note("report and plots")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    test_groups = sorted(map(str, np.unique(groups[test])))
    report = {"model": repr(tok), "split": {"by": held.by, "train_frames": int(len(train)), "test_frames": int(len(test)),
                                             "test_groups": test_groups, "n_test_groups": len(test_groups),
                                             "test_videos": test_videos, "seed": seed},
              "overlap_groups": overlap, "refit": refit_info,
              "validation_note": _validation_note(tok if refit_info is None else None, test_videos),
              "face_model": face_model_provenance(test_videos),
              "fidelity": fid.to_dict("records"), "level_curve_cosine": curve, "diversity": div,
              "retrieval": ret.to_dict("records"), "notes": notes}
    if refit_info:
        tok.save(outdir / "refit_model.dfe")
    (outdir / "report.json").write_text(json.dumps(report, indent=2, default=float))
    _plots(curve, tokens_test, tok.codebook_size, outdir)
    (outdir / "report.md").write_text(_report_markdown(report, fid, ret))
    steps.update(1)
    steps.note("")
    steps.close()
    return report


@dataclass(frozen=True)
class HeldOut:
    """Row indices of the training and held-out frames, and what was held out (in words)."""

    train: np.ndarray
    test: np.ndarray
    by: str


def held_out_split(videos: np.ndarray, groups: np.ndarray, tok: Tokenizer, split_by: str,
                   test_fraction: float = 0.3, seed: int = 0) -> HeldOut:
    """The frames to score on, preferring a split the model already respects.

    - The model records the videos it was trained on (dfe >= 0.3): the held-out frames are those of
      every group (video, or person with ``--group``) none of whose videos the model trained on (its
      validation videos and videos it never saw), and the training frames are the rest, so no refit
      is needed. With ``--group``, a person with any video in the model's training set is training.
    - Otherwise (an old model, or every group was trained on): a seeded split of whole groups
      (:func:`split_groups`), whose order follows the videos, not the text of the group ids.
    """
    trained = trained_videos(tok)
    if trained:
        touched = {g for g, v in zip(groups, videos) if v in trained}
        is_test = ~np.isin(groups, list(touched))
        if is_test.any() and (~is_test).any():
            what = "videos" if split_by == "video" else split_by
            return HeldOut(np.flatnonzero(~is_test), np.flatnonzero(is_test),
                           f"{what} the model never trained on (its validation videos and any new ones)")
    train, test = split_groups(len(videos), group_codes(videos, groups), test_fraction, seed)
    return HeldOut(train, test, split_by)


def expected_fit_seconds(tok: Tokenizer, rows: int) -> float:
    """How long a fit of ``tok``'s configuration on ``rows`` rows should take, scaled from its own fit."""
    s = tok.summary
    return float(s.seconds * rows / s.n_train) if s.seconds and s.n_train else float("nan")


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "an unknown time: the model does not record its own fit time"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _validation_note(tok: Tokenizer | None, test_videos: list[str]) -> str:
    """Which held-out videos were the scored model's own validation videos (they chose its best epoch)."""
    val = set(map(str, (tok.summary.data or {}).get("val_groups", []))) & set(test_videos) if tok is not None else set()
    return (f" ({len(val)} of the {len(test_videos)} were its validation videos, which chose its best epoch)"
            if val else "")


def trained_videos(tok: Tokenizer) -> set[str] | None:
    """The videos (groups) the model's weights were trained on; None when the model does not say
    (dfe 0.2 and older). Its validation videos are not among them: they only chose the best epoch."""
    if tok.seen_groups is None:
        return None
    return set(map(str, (tok.summary.data or {}).get("train_groups", [])))


def check_overlap(tok: Tokenizer, test_videos: list[str]) -> list[str] | None:
    """Held-out videos the model was trained on; None when the model does not say."""
    trained = trained_videos(tok)
    return None if trained is None else sorted(set(test_videos) & trained)


def _report_markdown(report: dict, fid: pd.DataFrame, ret: pd.DataFrame) -> str:
    d = report["diversity"]
    s = report["split"]
    div_lines = [f"- frames: {d['frames']}",
                 f"- distinct token combinations per 1,000 frames: {d['distinct_token_combinations_per_1000']:.1f}",
                 f"- perplexity per level: {', '.join(f'{p:.1f}' for p in d['perplexity_per_level'])}",
                 f"- share of codes never used: {d['codes_never_used_share']:.1%}"]
    if "distinct_binarised_blendshape_sets_per_1000" in d:
        div_lines.append(f"- distinct binarised blendshape sets (score > {d['blendshape_threshold']}) per 1,000 frames: "
                         f"{d['distinct_binarised_blendshape_sets_per_1000']:.1f}")
    refit = report.get("refit")
    honesty = (f"**The model file was not scored**: {refit['reason']}, so a tokenizer of its configuration was fitted "
               f"on the {refit['train_frames']} training frames and scored instead.\n\n" if refit else
               f"The model never trained on any held-out video{report.get('validation_note', '')}.\n\n")
    face = report.get("face_model")
    honesty += (f"Face model (if the tables were extracted with the bundled one): {face['statement']}\n\n" if face else "")
    return (f"# dfe evaluate\n\n{report['model']}\n\nHeld out by {s['by']}: {s['n_test_groups']} groups, "
            f"{s['test_frames']} frames; {s['train_frames']} training frames (seed {s['seed']}). Held-out groups: "
            f"{', '.join(s['test_groups'])}.\n\n{honesty}## Fidelity (held-out geometry psi)\n\n"
            "Cosine leaves out frames whose psi is exactly zero (a neutral reference photo itself); MSE keeps them.\n\n"
            f"{markdown_table(fid)}\n\nLevel curve (cosine with levels 1..k): "
            f"{', '.join(f'{c:.3f}' for c in report['level_curve_cosine'])}\n\n![levels](fidelity_levels.png)\n\n"
            f"## Diversity\n\n" + "\n".join(div_lines) + "\n\n![usage](usage.png)\n\n"
            f"## Retrieval\n\n{markdown_table(ret) if len(ret) else 'skipped (no blendshape columns to compare with)'}\n"
            + "".join(f"\n- note: {n}" for n in report.get("notes", [])) + "\n")


def _plots(curve: list[float], tokens: np.ndarray, N: int, outdir: Path) -> None:
    """``fidelity_levels.png`` (held-out cosine per number of levels) and ``usage.png`` (each
    level's code counts, most used first)."""
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=100)
    ax.plot(range(1, len(curve) + 1), curve, "o-")
    for x, c in zip(range(1, len(curve) + 1), curve):
        ax.annotate(f"{c:.3f}", (x, c), textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
    ax.set_xticks(range(1, len(curve) + 1))
    ax.set_ylim(0, 1)
    ax.set_xlabel("levels used (1..k)")
    ax.set_ylabel("held-out cosine")
    ax.set_title("fidelity per level")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, outdir / "fidelity_levels.png")
    fig, axes = plt.subplots(1, tokens.shape[1], figsize=(3 * tokens.shape[1], 2.5), dpi=80, sharey=True)
    for k, ax in enumerate(np.atleast_1d(axes)):
        ax.bar(range(N), np.sort(np.bincount(tokens[:, k], minlength=N))[::-1], width=1.0)
        ax.set_title(f"level {k + 1}")
        ax.set_xlabel("code (by frequency)")
    fig.tight_layout()
    save_figure(fig, outdir / "usage.png")
