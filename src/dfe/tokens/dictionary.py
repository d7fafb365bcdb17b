"""Shape-gain residual quantization: a code is a direction (an action), each token adds it at one of a
few shared intensities (its gain), like FACS pairs a unit with an intensity.

A frame x (standardised psi, projected on the training data's principal directions) is rebuilt as

    x_hat = g_1 u_{c_1} + ... + g_K u_{c_K}

with unit directions u_c from ONE codebook shared by all K levels and gains g from one table of G
values. A token is the pair (action c, intensity g), stored as one id ``c * G + g``: ``log2(N_actions)
+ log2(G)`` bits, both counted. Encoding (:class:`dfe.tokens.networks.ShapeGainModel`) is greedy over
levels with the exact best (action, gain) pair at each level, then refined. Training (:func:`fit_shape_gain`): residual k-means initialisation, then Lloyd
iterations (assign; each direction = the gain-weighted mean of the residuals it quantizes; each gain =
the mean projection of its tokens), with dead actions replaced by the direction of the worst-rebuilt
frame's residual (never a copy of a live action) and near-duplicate actions (cosine >= ``merge_cosine``)
merged, the less used one freed and replaced the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class ShapeGainCodebook:
    directions: np.ndarray  # (N, L) unit rows: the actions
    gains: np.ndarray  # (G,) increasing positive intensities, shared by every level and action


def best_words(r: np.ndarray, directions: np.ndarray, gains: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each residual row, the (action, gain) pair minimising |r - g u_c|^2 = (g - p_c)^2 - p_c^2 + |r|^2
    with p_c = r . u_c: for every action the best gain is the one nearest p_c. Returns (action, gain
    index, projection)."""
    p = r @ directions.T  # (n, N)
    gi = np.searchsorted((gains[1:] + gains[:-1]) / 2, p)
    err = (gains[gi] - p) ** 2 - p**2
    action = np.argmin(err, axis=1)
    rows = np.arange(len(r))
    return action, gi[rows, action], p[rows, action]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _init(z: np.ndarray, levels: int, n_actions: int, n_gains: int, seed: int) -> ShapeGainCodebook:
    """Residual k-means (n_actions centres per level), then one spherical k-means over the pooled
    residuals' directions: the shared actions; gains from quantiles of the residual norms."""
    from sklearn.cluster import KMeans

    r = z.copy()
    pooled = []
    for _ in range(levels):
        km = KMeans(min(n_actions, len(r)), n_init=1, random_state=seed).fit(r)
        pooled.append(r.copy())
        r = r - km.cluster_centers_[km.labels_]
    pooled = np.concatenate(pooled)
    norms = np.linalg.norm(pooled, axis=1)
    keep = norms > 1e-6
    km = KMeans(min(n_actions, int(keep.sum())), n_init=1, random_state=seed).fit(_unit(pooled[keep]))
    dirs = _unit(km.cluster_centers_).astype(np.float32)
    gains = np.quantile(norms[keep], (np.arange(n_gains) + 0.5) / n_gains)
    return ShapeGainCodebook(dirs, np.maximum(np.sort(gains), 1e-6).astype(np.float32))


def _replace(dirs: np.ndarray, free: np.ndarray, live: np.ndarray, final_resid: np.ndarray, merge_cosine: float) -> int:
    """Give each freed action the direction of a badly rebuilt frame's residual that no live action
    is already near (cosine < merge_cosine): the worst frames first. Returns how many were replaced."""
    order = np.argsort(-np.linalg.norm(final_resid, axis=1))
    cand = _unit(final_resid[order])
    taken = list(np.flatnonzero(live))
    done = 0
    j = 0
    for c in free:
        while j < len(cand):
            u = cand[j]
            j += 1
            if not taken or float((dirs[taken] @ u).max()) < merge_cosine:
                dirs[c] = u
                taken.append(c)
                done += 1
                break
    return done


def fit_shape_gain(z: np.ndarray, levels: int = 4, n_actions: int = 64, n_gains: int = 4, iters: int = 25,
                   merge_cosine: float = 0.9, min_count: int = 2, seed: int = 0,
                   on_iteration=None) -> tuple[ShapeGainCodebook, dict]:
    """Train the shared shape-gain codebook on (n, L) latent rows; returns it and training stats.
    ``seed``: the k-means initialisation's random state (the iterations draw nothing).
    ``on_iteration(relative_error)``: called after each iteration (progress displays)."""
    z = np.asarray(z, dtype=np.float32)
    book = _init(z, levels, n_actions, n_gains, seed)
    dirs, gains = book.directions.copy(), book.gains.copy()
    n_act = len(dirs)
    replaced = merged = 0
    history = []
    for it in range(iters):
        r = z.copy()
        num = np.zeros_like(dirs)
        count = np.zeros(n_act, np.int64)
        gsum = np.zeros(gains.shape)
        gcount = np.zeros(gains.shape)
        for _ in range(levels):
            a, g, p = best_words(r, dirs, gains)
            gv = gains[g]
            np.add.at(num, a, gv[:, None] * r)
            np.add.at(count, a, 1)
            np.add.at(gsum, g, p)
            np.add.at(gcount, g, 1)
            r = r - gv[:, None] * dirs[a]
        history.append(float((r**2).sum(1).mean() / max((z**2).sum(1).mean(), 1e-12)))
        if on_iteration is not None:
            on_iteration(history[-1])
        live = count >= min_count
        dirs = np.where(live[:, None], _unit(num), dirs).astype(np.float32)
        gains = np.where(gcount > 0, gsum / np.maximum(gcount, 1), gains)
        gains = np.sort(np.maximum(gains, 1e-6)).astype(np.float32)
        if it == iters - 1:
            break
        # near-duplicates: the less used of each close pair is freed
        sim = dirs @ dirs.T
        np.fill_diagonal(sim, -1)
        for i, j in zip(*np.nonzero(np.triu(sim >= merge_cosine, 1))):
            if live[i] and live[j]:
                drop = i if count[i] < count[j] else j
                live[drop] = False
                merged += 1
        free = np.flatnonzero(~live)
        if len(free):
            replaced += _replace(dirs, free, live, r, merge_cosine)
    stats = {"relative_error": history, "replaced": int(replaced), "merged": int(merged),
             "iterations": len(history)}
    return ShapeGainCodebook(dirs, gains), stats


def max_pair_cosine(directions: np.ndarray) -> float:
    """The largest cosine between two different actions."""
    sim = _unit(directions) @ _unit(directions).T
    np.fill_diagonal(sim, -1)
    return float(sim.max()) if len(sim) > 1 else -1.0


def actions_for_data(n_frames: int, requested: int, frames_per_action: int = 8) -> int:
    """The most actions ``n_frames`` training frames support (about ``frames_per_action`` each)."""
    return int(max(2, min(requested, n_frames // frames_per_action)))
