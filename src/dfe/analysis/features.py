"""From tokens to predictions: per-video bags of tokens, action-unit-like baselines, event features.

Every feature extractor here is a scikit-learn transformer whose input ``X`` is a list of
per-video frame tables (pandas DataFrames, successful and failed rows alike), so each one drops
into a :class:`sklearn.pipeline.Pipeline` and is fitted on training videos only inside CV. They
follow scikit-learn's rules: ``__init__`` only stores the parameters, ``fit`` validates them
(``_parameter_constraints``: a bad one fails there, in one sentence naming it and the allowed
values) and learns the attributes ending in ``_``, ``transform`` raises ``NotFittedError`` before
``fit`` and changes nothing on the estimator.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from numbers import Integral, Real

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.preprocessing import normalize
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from dfe.errors import DfeError
from dfe.table import AU_INTENSITY_COLUMNS, BLENDSHAPE_COLUMNS, psi_columns, strength_columns, token_columns
from dfe.analysis.events import EventOptions, blendshape_events, duration, token_events

log = logging.getLogger(__name__)

POSITIVE_INT = Interval(Integral, 1, None, closed="left")
NON_NEGATIVE = Interval(Real, 0, None, closed="left")


class FeatureError(DfeError, ValueError):
    """Videos (or a combination of parameters) a feature extractor cannot use."""


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["success"] == 1]


# ---------------------------------------------------------------------------- bag of tokens

def video_tokens(video, strength: bool = False) -> tuple[np.ndarray, np.ndarray | None, int]:
    """One video's (frames, K) tokens over its frames with a face, their ``strength_k`` weights
    (clipped at 0; None unless ``strength``) and how many failed frames were skipped. ``video``: a
    frame table (failed frames: success != 1) or an (n, K) token array (failed frames: any token < 0;
    an array carries no strengths, so each of its tokens counts 1)."""
    if isinstance(video, pd.DataFrame):
        ok = _ok(video)
        columns = token_columns(video)
        weights = None
        if strength:
            weights = ok[[c.replace("tok_", "strength_") for c in columns]].to_numpy(float)
            weights = np.clip(np.nan_to_num(weights), 0, None)
        return ok[columns].to_numpy(np.int64), weights, len(video) - len(ok)
    tokens = np.asarray(video, dtype=np.int64)
    keep = (tokens >= 0).all(1)
    return tokens[keep], None, int((~keep).sum())


def level_counts(tokens: np.ndarray, weights: np.ndarray | None, codebook_size: int) -> np.ndarray:
    """(K, N) counts of each code at each level (or summed ``weights``, one per token)."""
    counts = np.zeros((tokens.shape[1], codebook_size))
    for k in range(tokens.shape[1]):
        counts[k] = np.bincount(tokens[:, k], None if weights is None else weights[:, k], minlength=codebook_size)
    return counts


def bigram_counts(first_level: np.ndarray, codebook_size: int) -> np.ndarray:
    """N x N counts of consecutive frames' token pairs (a -> b at a * N + b)."""
    bigrams = np.zeros(codebook_size * codebook_size)
    np.add.at(bigrams, first_level[:-1] * codebook_size + first_level[1:], 1)
    return bigrams


class BagOfTokens(TransformerMixin, BaseEstimator):
    """Per-video histograms over the shared token vocabulary of ``codebook_size`` codes.

    levels: ``pooled`` (all levels in one N-bin histogram), ``per_level`` (K x N bins) or
    ``weighted`` (pooled, level k counted with weight 1/k: coarse tokens count more).
    weighting: ``tf`` (counts), ``log`` (1 + log tf), ``tfidf`` (log tf x idf fitted on training
    videos), ``binary``. norm: ``l1``, ``l2`` or None. bigrams: add counts of consecutive frames'
    first-level token pairs (N x N sparse bins). strength: each token counts its ``strength_k``
    (cm, >= 0) instead of 1 (tables only; pooled or per_level). gains: a shape-gain model's
    intensity table (``tok.model.gains``, G values): each token ``c * G + g`` counts into its action
    ``c``'s bin with weight ``gains[g]``, so a bag has ``codebook_size / G`` bins per level and a
    strong smile weighs more than a faint one (not with strength or bigrams). Failed frames
    (success=0) are skipped; ``fit`` records how many of the training videos' frames it skipped in
    ``n_skipped_``.
    """

    _parameter_constraints = {
        "codebook_size": [POSITIVE_INT],
        "levels": [StrOptions({"pooled", "per_level", "weighted"})],
        "weighting": [StrOptions({"tf", "log", "tfidf", "binary"})],
        "norm": [StrOptions({"l1", "l2"}), None],
        "bigrams": ["boolean"],
        "strength": ["boolean"],
        "gains": ["array-like", None],
    }

    def __init__(self, codebook_size: int = 256, levels: str = "pooled", weighting: str = "tf",
                 norm: str | None = "l1", bigrams: bool = False, strength: bool = False, gains=None):
        self.codebook_size = codebook_size
        self.levels = levels
        self.weighting = weighting
        self.norm = norm
        self.bigrams = bigrams
        self.strength = strength
        self.gains = gains

    def _bins(self) -> int:
        """Bins per level: the codes, or with ``gains`` the actions."""
        return self.codebook_size // len(self.gains) if self.gains is not None else self.codebook_size

    def _video_counts(self, video) -> tuple[np.ndarray, int]:
        """One video's unweighted bag (its bins, before tf/idf/norm) and its skipped frames."""
        N = self.codebook_size
        tokens, weights, skipped = video_tokens(video, self.strength)
        if tokens.size and tokens.max() >= N:
            raise FeatureError(f"token id {tokens.max()} >= codebook_size {N}: the tokens come from a larger "
                               "vocabulary than this bag's")
        if self.gains is not None:
            gains = np.asarray(self.gains, dtype=float)
            weights, tokens = gains[tokens % len(gains)], tokens // len(gains)
        counts = level_counts(tokens, weights, self._bins())
        if self.levels == "per_level":
            row = counts.ravel()
        elif self.levels == "weighted":
            row = (counts / np.arange(1, len(counts) + 1)[:, None]).sum(0)
        else:
            row = counts.sum(0)
        if self.bigrams:
            row = np.concatenate([row, bigram_counts(tokens[:, 0], N)])
        return row, skipped

    def _counts(self, X) -> tuple[sparse.csr_matrix, int]:
        """The (videos, bins) counts of ``X`` and the failed frames skipped in all."""
        if not len(X):
            return sparse.csr_matrix((0, self._bins())), 0
        rows, skipped = zip(*(self._video_counts(video) for video in X))
        return sparse.vstack([sparse.csr_matrix(row) for row in rows]).tocsr(), int(sum(skipped))

    def _fit(self, X) -> sparse.csr_matrix:
        if self.strength and self.levels == "weighted":
            raise FeatureError("BagOfTokens: strength=True needs levels 'pooled' or 'per_level', not 'weighted'")
        if self.gains is not None and (self.strength or self.bigrams or len(self.gains) < 1
                                       or self.codebook_size % len(self.gains)):
            raise FeatureError(f"BagOfTokens: gains needs codebook_size ({self.codebook_size}) to be a multiple of "
                               f"its {len(self.gains)} values, and neither strength nor bigrams")
        counts, self.n_skipped_ = self._counts(X)
        videos_with = np.asarray((counts > 0).sum(0)).ravel()
        self.idf_ = np.log((1 + counts.shape[0]) / (1 + videos_with)) + 1
        self.n_features_out_ = counts.shape[1]
        return counts

    def _weigh(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        m = counts.astype(float)
        if self.weighting in ("log", "tfidf"):
            m.data = 1 + np.log(m.data)
        elif self.weighting == "binary":
            m.data = np.ones_like(m.data)
        if self.weighting == "tfidf":
            m = m.multiply(self.idf_[None, :]).tocsr()
        return normalize(m, norm=self.norm) if self.norm else m

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        self._fit(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """``fit(X).transform(X)``, counting the training videos once."""
        return self._weigh(self._fit(X))

    def transform(self, X):
        check_is_fitted(self, "idf_")
        counts, _ = self._counts(X)
        if len(X) and counts.shape[1] != self.n_features_out_:
            raise FeatureError(f"these videos give {counts.shape[1]} bins, the training videos gave "
                               f"{self.n_features_out_}: their tables have another number of token levels")
        return self._weigh(counts)


# ---------------------------------------------------------------------------- functionals

FUNCTIONALS = ["mean", "std", "p10", "p50", "p90"]


def functionals(values: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Per-column mean, std, 10th/50th/90th percentiles (+ share of frames above ``threshold``),
    in the order of :func:`functional_names`."""
    if len(values) == 0:
        n = values.shape[1] * (6 if threshold is not None else 5)
        return np.full(n, np.nan)
    parts = [values.mean(0), values.std(0), *np.percentile(values, [10, 50, 90], axis=0)]
    if threshold is not None:
        parts.append((values > threshold).mean(0))
    return np.concatenate(parts)


def functional_names(columns: list[str], threshold: float | None = None) -> list[str]:
    """``<column>_<functional>`` for each value :func:`functionals` returns, in its order."""
    stats = FUNCTIONALS + ([f"above_{threshold:g}"] if threshold is not None else [])
    return [f"{c}_{s}" for s in stats for c in columns]


class StatelessTransformer(TransformerMixin, BaseEstimator):
    """A transformer that learns nothing: ``fit`` only validates the parameters and ``transform``
    works unfitted too (scikit-learn's ``requires_fit=False``, as for its ``Normalizer``)."""

    _parameter_constraints: dict = {}

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags


class BlendshapeFunctionals(StatelessTransformer):
    """Baseline (a): the 52 blendshape scores (the action-unit-like output) summarised per video
    over its frames with a face (:func:`functionals`, with the share above ``threshold``; None: no
    share). ``columns``: summarise these per-frame columns instead (e.g. an OpenFace CSV's AU
    columns, :mod:`dfe.analysis.baselines`)."""

    _parameter_constraints = {"threshold": [Real, None], "columns": [list, None]}

    def __init__(self, threshold: float | None = 0.5, columns: list[str] | None = None):
        self.threshold = threshold
        self.columns = columns

    def transform(self, X):
        cols = BLENDSHAPE_COLUMNS if self.columns is None else list(self.columns)
        return np.nan_to_num(np.stack([functionals(_ok(df)[cols].to_numpy(float), self.threshold) for df in X]))


class ActionUnitFunctionals(TransformerMixin, BaseEstimator):
    """OpenFace-style baseline: per video, functionals (mean, std, percentiles, share above the
    unit's presence ``threshold``, cm) of dfe's ``AUxx_r`` columns (:mod:`dfe.extraction.action_units`).
    ``fit`` keeps, in ``columns_``, the units measured in some frame of a training video; a unit
    not measured in a frame (NaN) counts as 0 there."""

    _parameter_constraints = {"threshold": [Real]}

    def __init__(self, threshold: float = 0.05):
        self.threshold = threshold

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        self.columns_ = [c for c in AU_INTENSITY_COLUMNS if any(c in df and df[c].notna().any() for df in X)]
        return self

    def transform(self, X):
        check_is_fitted(self, "columns_")
        rows = [functionals(np.nan_to_num(_ok(df).reindex(columns=self.columns_).to_numpy(float)), self.threshold)
                for df in X]
        return np.vstack(rows)


class PsiFunctionals(StatelessTransformer):
    """Baseline (c): raw psi summarised per video: functionals of each vertex's displacement magnitude."""

    def transform(self, X):
        feats = []
        for df in X:
            columns = psi_columns(df)
            psi = _ok(df)[columns].to_numpy(np.float32).reshape(-1, len(columns) // 3, 3)
            feats.append(functionals(np.linalg.norm(psi, axis=2)))
        return np.nan_to_num(np.stack(feats))


class BlendshapeBoW(TransformerMixin, BaseEstimator):
    """Baseline (b): openXBOW-style bag of words over blendshape vectors, k-means codebook of
    ``n_words`` (same size as dfe's vocabulary) fitted on the training videos' frames (at most
    ``max_frames`` of them, drawn with ``random_state``)."""

    _parameter_constraints = {
        "n_words": [POSITIVE_INT],
        "norm": [StrOptions({"l1", "l2"}), None],
        "random_state": ["random_state"],
        "max_frames": [POSITIVE_INT],
    }

    def __init__(self, n_words: int = 256, norm: str | None = "l1", random_state=0, max_frames: int = 50_000):
        self.n_words = n_words
        self.norm = norm
        self.random_state = random_state
        self.max_frames = max_frames

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        from sklearn.cluster import MiniBatchKMeans

        frames = np.concatenate([_ok(df)[BLENDSHAPE_COLUMNS].to_numpy(np.float32) for df in X])
        if not len(frames):
            raise FeatureError("no training video has a frame with a face: the blendshape words need some")
        random_state = check_random_state(self.random_state)
        if len(frames) > self.max_frames:
            frames = frames[random_state.choice(len(frames), self.max_frames, replace=False)]
        k = min(self.n_words, len(frames))
        self.kmeans_ = MiniBatchKMeans(k, random_state=random_state, n_init=3).fit(frames)
        return self

    def transform(self, X):
        check_is_fitted(self, "kmeans_")
        out = np.zeros((len(X), self.n_words))
        for i, df in enumerate(X):
            bs = _ok(df)[BLENDSHAPE_COLUMNS].to_numpy(np.float32)
            if len(bs):
                out[i] = np.bincount(self.kmeans_.predict(bs), minlength=self.n_words)
        return normalize(out, norm=self.norm) if self.norm else out


# ---------------------------------------------------------------------------- events

def event_statistics(events: pd.DataFrame, n_units: int, minutes: float) -> sparse.csr_matrix:
    """One video's dynamic features from its events (:mod:`dfe.analysis.events`), as a 1-row sparse matrix:
    per unit (code or blendshape) the event rate per minute, mean and max duration (s), mean onset
    and offset speed, mean apex position within the event (0 = at onset, 1 = at offset); then
    transitions (unit a's event followed by unit b's next onset in the same face track, per
    minute, N x N) and co-occurrence (events of a and b overlapping in time, per minute, N x N)."""
    N = n_units
    stats = np.zeros((6, N))
    trans = np.zeros(N * N)
    co = np.zeros(N * N)
    if len(events):
        code = events["code"].to_numpy(np.int64)
        dur = events["duration"].to_numpy(float)
        count = np.bincount(code, minlength=N)
        seen = count > 0

        def mean_of(values):
            v = np.nan_to_num(np.asarray(values, float))
            return np.where(seen, np.bincount(code, v, minlength=N) / np.maximum(count, 1), 0.0)

        stats[0] = count / max(minutes, 1e-9)
        stats[1] = mean_of(dur)
        np.maximum.at(stats[2], code, dur)
        stats[3] = mean_of(events["onset_speed"])
        stats[4] = mean_of(events["offset_speed"])
        stats[5] = mean_of((events["apex"] - events["onset"]) / np.maximum(dur, 1e-9))
        for _, track in events.groupby("face_id", sort=False):
            track = track.sort_values("onset", kind="stable")
            c = track["code"].to_numpy(np.int64)
            on, off = track["onset"].to_numpy(float), track["offset"].to_numpy(float)
            np.add.at(trans, c[:-1] * N + c[1:], 1)
            ends = np.searchsorted(on, off, side="left")  # events j > i that start before i ends overlap it
            n_after = np.maximum(ends - np.arange(len(c)) - 1, 0)
            i = np.repeat(np.arange(len(c)), n_after)
            j = i + 1 + np.arange(len(i)) - np.repeat(np.cumsum(n_after) - n_after, n_after)
            a, b = np.minimum(c[i], c[j]), np.maximum(c[i], c[j])
            np.add.at(co, a * N + b, 1)
        trans /= max(minutes, 1e-9)
        co /= max(minutes, 1e-9)
    return sparse.hstack([sparse.csr_matrix(stats.ravel()), sparse.csr_matrix(trans), sparse.csr_matrix(co)]).tocsr()


_EVENT_ROWS: OrderedDict = OrderedDict()  # (source, options, units, content digest) -> 1-row matrix
_EVENT_ROWS_KEPT = 4096


def _event_inputs(df: pd.DataFrame, source: str) -> list[str]:
    """The columns a video's events are computed from."""
    values = token_columns(df) + strength_columns(df) if source == "tokens" else list(BLENDSHAPE_COLUMNS)
    return values + [c for c in ("timestamp", "face_id", "success") if c in df.columns]


def video_event_statistics(df: pd.DataFrame, source: str, options: EventOptions, n_units: int) -> sparse.csr_matrix:
    """:func:`event_statistics` of one video's events (of its codes or its blendshapes), remembered
    by the content of the columns they come from: cross-validation asks for every video's events
    in every fold, and they never depend on the fold."""
    columns = _event_inputs(df, source)
    digest = hashlib.blake2b(pd.util.hash_pandas_object(df[columns], index=False).to_numpy().tobytes(),
                             digest_size=16).hexdigest()
    key = (source, options, n_units, tuple(columns), digest)
    if key in _EVENT_ROWS:
        _EVENT_ROWS.move_to_end(key)
        return _EVENT_ROWS[key]
    events = token_events(df, options=options) if source == "tokens" else blendshape_events(df, options=options)
    row = event_statistics(events, n_units, duration(df["timestamp"]) / 60)
    _EVENT_ROWS[key] = row
    if len(_EVENT_ROWS) > _EVENT_ROWS_KEPT:
        _EVENT_ROWS.popitem(last=False)
    return row



class EventFeatures(TransformerMixin, BaseEstimator):
    """Dynamic features per video (:func:`event_statistics`) from events of dfe's codes
    (``source="tokens"``, needs encoded tables) or of the 52 blendshapes (``source="blendshapes"``:
    the dynamic AU-like baseline). ``levels``, ``max_gap``, ``min_duration``: see
    :class:`dfe.analysis.events.EventOptions`. ``fit`` keeps, in ``columns_``, the features seen
    in some training video (most code pairs never occur)."""

    _parameter_constraints = {
        "codebook_size": [POSITIVE_INT],
        "source": [StrOptions({"tokens", "blendshapes"})],
        "levels": [POSITIVE_INT, None],
        "max_gap": [NON_NEGATIVE],
        "min_duration": [NON_NEGATIVE],
    }

    def __init__(self, codebook_size: int = 256, source: str = "tokens", levels: int | None = None,
                 max_gap: float = 0.1, min_duration: float = 0.1):
        self.codebook_size = codebook_size
        self.source = source
        self.levels = levels
        self.max_gap = max_gap
        self.min_duration = min_duration

    def _features(self, X) -> sparse.csr_matrix:
        options = EventOptions(levels=self.levels, max_gap=self.max_gap, min_duration=self.min_duration)
        n_units = self.codebook_size if self.source == "tokens" else len(BLENDSHAPE_COLUMNS)
        return sparse.vstack([video_event_statistics(df, self.source, options, n_units) for df in X]).tocsr()

    def _fit(self, X) -> None:
        features = self._features(X)  # remembered per video: transform(X) after fit(X) computes no event twice
        self.columns_ = np.flatnonzero(np.asarray((features != 0).sum(0)).ravel())
        self.n_features_out_ = len(self.columns_)
        if not self.n_features_out_:
            single = sum(len(df) <= 1 or df["timestamp"].nunique() <= 1 for df in X)
            why = (f"{single} of the {len(X)} tables are single photos (one frame): events need frames over time"
                   if single else "no event lasted long enough in any training video")
            log.warning("event features are empty (%s); use the bag of tokens for photos", why)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        self._fit(X)
        return self

    def transform(self, X):
        check_is_fitted(self, "columns_")
        return self._features(X)[:, self.columns_]


# ---------------------------------------------------------------------------- another tool's features

class UserFeatures(TransformerMixin, BaseEstimator):
    """Baseline (d): any per-video feature table (e.g. OpenFace AU means, an embedding), joined by
    video id (its first column, read as text); ``fit`` indexes it by that id (``table_``)."""

    _parameter_constraints = {"table": [pd.DataFrame]}

    def __init__(self, table: pd.DataFrame | None = None):
        self.table = table

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        table = self.table.set_index(self.table.columns[0])
        table.index = table.index.astype(str)
        self.table_ = table
        return self

    def transform(self, X):
        check_is_fitted(self, "table_")
        ids = [str(df["video"].iloc[0]) for df in X]
        missing = [i for i in ids if i not in self.table_.index]
        if missing:
            raise FeatureError(f"the feature table has no row for the videos {', '.join(missing[:5])}")
        return self.table_.loc[ids].to_numpy(float)
