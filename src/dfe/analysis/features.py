"""From tokens to predictions: per-video bags of tokens, action-unit-like baselines, grouped CV.

Every feature extractor here is a scikit-learn transformer whose input ``X`` is a list of
per-video frame tables (pandas DataFrames, successful and failed rows alike), so each one drops
into a :class:`sklearn.pipeline.Pipeline` and is fitted on training videos only inside CV.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin


from dfe.table import BLENDSHAPE_COLUMNS, psi_columns, token_columns
from dfe.analysis.events import EventOptions, blendshape_events, duration, token_events

log = logging.getLogger(__name__)


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["success"] == 1]


class BagOfTokens(TransformerMixin, BaseEstimator):
    """Per-video histograms over the shared token vocabulary.

    levels: ``pooled`` (all levels in one N-bin histogram), ``per_level`` (K x N bins) or
    ``weighted`` (pooled, level k counted with weight 1/k: coarse tokens count more).
    weighting: ``tf`` (counts), ``log`` (1 + log tf), ``tfidf`` (log tf x idf fitted on training
    videos), ``binary``. norm: ``l1``, ``l2`` or None. bigrams: add counts of consecutive frames'
    first-level token pairs (N x N sparse bins). Failed frames (success=0) are skipped and counted
    in ``n_skipped_``.
    """

    def __init__(self, codebook_size: int = 256, levels: str = "pooled", weighting: str = "tf",
                 norm: str | None = "l1", bigrams: bool = False, strength: bool = False):
        self.strength = strength  # tables: each token counts its strength_k (cm, >= 0) instead of 1
        self.codebook_size = codebook_size
        self.levels = levels
        self.weighting = weighting
        self.norm = norm
        self.bigrams = bigrams

    def _counts(self, X) -> sparse.csr_matrix:
        N = self.codebook_size
        rows = []
        self.n_skipped_ = 0
        for df in X:
            if isinstance(df, pd.DataFrame):
                self.n_skipped_ += int((df["success"] != 1).sum())
                ok = _ok(df)
                tokens = ok[token_columns(df)].to_numpy(np.int64)
                if self.strength:
                    cols = [f"strength_{c.split('_')[1]}" for c in token_columns(df)]
                    weights = np.clip(np.nan_to_num(ok[cols].to_numpy(float)), 0, None)
            else:
                tokens = np.asarray(df, dtype=np.int64)
                keep = (tokens >= 0).all(1)
                self.n_skipped_ += int((~keep).sum())
                tokens = tokens[keep]
            if tokens.size and tokens.max() >= N:
                raise ValueError(f"token id {tokens.max()} >= codebook_size {N}")
            K = tokens.shape[1] if tokens.ndim == 2 else 1
            if self.strength and isinstance(df, pd.DataFrame):
                if self.levels != "pooled" and self.levels != "per_level":
                    raise ValueError("strength-weighted bags are pooled or per_level")
                per = [np.bincount(tokens[:, k], weights=weights[:, k], minlength=N) for k in range(K)]
                vec = np.concatenate(per) if self.levels == "per_level" else np.sum(per, axis=0)
            elif self.levels == "per_level":
                vec = np.concatenate([np.bincount(tokens[:, k], minlength=N) for k in range(K)]).astype(float)
            elif self.levels == "weighted":
                vec = sum(np.bincount(tokens[:, k], minlength=N) / (k + 1) for k in range(K)).astype(float)
            elif self.levels == "pooled":
                vec = np.bincount(tokens.ravel(), minlength=N).astype(float)
            else:
                raise ValueError("levels must be pooled, per_level or weighted")
            row = sparse.csr_matrix(vec)
            if self.bigrams:
                bi = np.zeros(N * N)
                if len(tokens) > 1:
                    np.add.at(bi, tokens[:-1, 0] * N + tokens[1:, 0], 1)
                row = sparse.hstack([row, sparse.csr_matrix(bi)]).tocsr()
            rows.append(row)
        return sparse.vstack(rows).tocsr() if rows else sparse.csr_matrix((0, N))

    def fit(self, X, y=None):
        counts = self._counts(X)
        df = np.asarray((counts > 0).sum(0)).ravel()
        self.idf_ = np.log((1 + counts.shape[0]) / (1 + df)) + 1
        self.n_features_out_ = counts.shape[1]
        return self

    def transform(self, X):
        m = self._counts(X).astype(float)
        if self.weighting in ("log", "tfidf"):
            m.data = 1 + np.log(m.data)
        elif self.weighting == "binary":
            m.data = np.ones_like(m.data)
        elif self.weighting != "tf":
            raise ValueError("weighting must be tf, log, tfidf or binary")
        if self.weighting == "tfidf":
            m = m.multiply(self.idf_[None, :]).tocsr()
        if self.norm:
            from sklearn.preprocessing import normalize

            m = normalize(m, norm=self.norm)
        return m


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


class BlendshapeFunctionals(TransformerMixin, BaseEstimator):
    """Baseline (a): the 52 blendshape scores (the action-unit-like output) summarised per video
    over its frames with a face. ``columns``: summarise these per-frame columns instead (e.g. an
    OpenFace CSV's AU columns, :mod:`dfe.analysis.baselines`)."""

    def __init__(self, threshold: float = 0.5, columns: list[str] | None = None):
        self.threshold = threshold
        self.columns = columns

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        cols = BLENDSHAPE_COLUMNS if self.columns is None else list(self.columns)
        return np.nan_to_num(np.stack([functionals(_ok(df)[cols].to_numpy(float), self.threshold) for df in X]))


class BlendshapeBoW(TransformerMixin, BaseEstimator):
    """Baseline (b): openXBOW-style bag of words over blendshape vectors, k-means codebook of
    ``n_words`` (same size as dfe's vocabulary) fitted on the training videos' frames."""

    def __init__(self, n_words: int = 256, norm: str | None = "l1", seed: int = 0, max_frames: int = 50_000):
        self.n_words = n_words
        self.norm = norm
        self.seed = seed
        self.max_frames = max_frames

    def fit(self, X, y=None):
        from sklearn.cluster import MiniBatchKMeans

        frames = np.concatenate([_ok(df)[BLENDSHAPE_COLUMNS].to_numpy(np.float32) for df in X])
        rng = np.random.default_rng(self.seed)
        if len(frames) > self.max_frames:
            frames = frames[rng.choice(len(frames), self.max_frames, replace=False)]
        k = min(self.n_words, len(frames))
        self.kmeans_ = MiniBatchKMeans(k, random_state=self.seed, n_init=3).fit(frames)
        return self

    def transform(self, X):
        out = np.zeros((len(X), self.n_words))
        for i, df in enumerate(X):
            bs = _ok(df)[BLENDSHAPE_COLUMNS].to_numpy(np.float32)
            if len(bs):
                out[i] = np.bincount(self.kmeans_.predict(bs), minlength=self.n_words)
        if self.norm:
            from sklearn.preprocessing import normalize

            out = normalize(out, norm=self.norm)
        return out


class PsiFunctionals(TransformerMixin, BaseEstimator):
    """Baseline (c): raw psi summarised per video: functionals of each vertex's displacement magnitude."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        feats = []
        for df in X:
            psi = _ok(df)[psi_columns(df)].to_numpy(np.float32)
            mag = np.linalg.norm(psi.reshape(len(psi), -1, 3), axis=2) if len(psi) else np.zeros((0, 468))
            feats.append(functionals(mag))
        return np.nan_to_num(np.stack(feats))


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


class EventFeatures(TransformerMixin, BaseEstimator):
    """Dynamic features per video (:func:`event_statistics`) from events of dfe's codes
    (``source="tokens"``, needs encoded tables) or of the 52 blendshapes (``source="blendshapes"``:
    the dynamic AU-like baseline). ``levels``, ``max_gap``, ``min_duration``: see
    :class:`dfe.analysis.events.EventOptions`."""

    def __init__(self, codebook_size: int = 256, source: str = "tokens", levels: int | None = None,
                 max_gap: float = 0.1, min_duration: float = 0.1):
        self.codebook_size = codebook_size
        self.source = source
        self.levels = levels
        self.max_gap = max_gap
        self.min_duration = min_duration

    def _features(self, X) -> sparse.csr_matrix:
        options = EventOptions(levels=self.levels, max_gap=self.max_gap, min_duration=self.min_duration)
        if self.source == "tokens":
            n_units, events_of = self.codebook_size, lambda df: token_events(df, options=options)
        elif self.source == "blendshapes":
            n_units, events_of = len(BLENDSHAPE_COLUMNS), lambda df: blendshape_events(df, options=options)
        else:
            raise ValueError("source must be 'tokens' or 'blendshapes'")

        return sparse.vstack([event_statistics(events_of(df), n_units, duration(df["timestamp"]) / 60)
                              for df in X]).tocsr()

    def fit_transform(self, X, y=None):
        """Keep the features seen in any training video (most code pairs never occur); the events
        of the training videos are computed once."""
        features = self._features(X)
        self.columns_ = np.flatnonzero(np.asarray((features != 0).sum(0)).ravel())
        self.n_features_out_ = len(self.columns_)
        if not self.n_features_out_:
            single = sum(len(df) <= 1 or df["timestamp"].nunique() <= 1 for df in X)
            why = (f"{single} of the {len(X)} tables are single photos (one frame): events need frames over time"
                   if single else "no event lasted long enough in any training video")
            log.warning("event features are empty (%s); use the bag of tokens for photos", why)
        return features[:, self.columns_]

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def transform(self, X):
        return self._features(X)[:, self.columns_]


class UserFeatures(TransformerMixin, BaseEstimator):
    """Baseline (d): any per-video feature table (e.g. OpenFace AU means, an embedding), joined by
    video id (first column)."""

    def __init__(self, table: pd.DataFrame | None = None):
        self.table = table

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        t = self.table.set_index(self.table.columns[0])
        t.index = t.index.astype(str)
        ids = [str(df["video"].iloc[0]) for df in X]
        missing = [i for i in ids if i not in t.index]
        if missing:
            raise ValueError(f"feature table has no row for videos: {', '.join(missing[:5])}")
        return t.loc[ids].to_numpy(float)






# ---------------------------------------------------------------------------- videos and labels









# ---------------------------------------------------------------------------- evaluation



























