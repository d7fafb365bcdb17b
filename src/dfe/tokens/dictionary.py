"""Shape-gain residual quantization: a code is a direction (an action), each token adds it at one of a
few shared intensities (its gain), like FACS pairs a unit with an intensity.

A frame x (standardised psi, projected on the training data's principal directions) is rebuilt as

    x_hat = g_1 u_{c_1} + ... + g_K u_{c_K}

with unit directions u_c from ONE codebook shared by all K levels and gains g from one table of G
values. A token is the pair (action c, intensity g), stored as one id ``c * G + g``: ``log2(N_actions)
+ log2(G)`` bits, both counted. Encoding (:class:`dfe.tokens.networks.ShapeGainModel`) is greedy over
levels with the exact best (action, gain) pair at each level among the actions the frame has not used
yet (``distinct_actions``, the default since dfe 0.8: each action at most once per frame), then refined.
Training (:func:`fit_shape_gain`): residual k-means initialisation, then Lloyd iterations. Each iteration encodes every frame as the encoder
will (greedy, then refined), then updates the codebook for those tokens:

- ``update="joint"`` (the default since dfe 0.8): all actions at once, by least squares over every
  level's tokens (the directions that rebuild the frames best given the tokens; :func:`joint_directions`),
  then the gain table the same way (:func:`joint_gains`): the codebook update of additive quantization;
- ``update="per-level"`` (dfe 0.4-0.7): each direction the gain-weighted mean of the residuals it
  quantizes, each gain the mean projection of its tokens.

Dead actions are replaced by the direction of the worst-rebuilt frame's residual (never a copy of a live
action) and near-duplicate actions (cosine >= ``merge_cosine``) merged, the less used one freed and
replaced the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from dfe.tokens.config import CODEBOOK_UPDATES
from dfe.tokens.networks import refined_residual_search

log = logging.getLogger(__name__)


@dataclass
class ShapeGainCodebook:
    directions: np.ndarray  # (N, L) unit rows: the actions
    gains: np.ndarray  # (G,) increasing positive intensities, shared by every level and action


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


def encode_words(z: np.ndarray, dirs: np.ndarray, gains: np.ndarray, levels: int, refine_passes: int,
                 distinct_actions: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens of (n, L) rows as the encoder chooses them: (actions (n, K), gain indices (n, K), the
    rebuilt rows (n, L)). ``distinct_actions``: each action at most once per row."""
    words = torch.from_numpy((dirs[:, None, :] * gains[None, :, None]).reshape(-1, dirs.shape[1]))
    ids, total = refined_residual_search(torch.from_numpy(z), words, levels, refine_passes,
                                         len(gains) if distinct_actions else 0)
    ids = ids.numpy()
    return ids // len(gains), ids % len(gains), total.numpy()


def _token_matrix(actions: np.ndarray, values: np.ndarray, n_actions: int):
    """Sparse (n, N) matrix: row i holds, for each action, the sum of ``values`` of frame i's tokens
    of that action."""
    from scipy.sparse import csr_matrix

    rows = np.repeat(np.arange(len(actions)), actions.shape[1])
    return csr_matrix((np.asarray(values, np.float64).ravel(), (rows, actions.ravel())), shape=(len(actions), n_actions))


def joint_directions(z: np.ndarray, actions: np.ndarray, gain_values: np.ndarray, n_actions: int,
                     ridge: float = 1e-3) -> np.ndarray:
    """The (N, L) vectors v minimising sum_i |z_i - sum_k g_ik v_{a_ik}|^2 for given tokens (actions
    ``a`` and their gain values ``g``, (n, K) each): least squares over all levels at once, with a
    ridge of ``ridge`` x the mean diagonal. Rows of unused actions are 0."""
    a = _token_matrix(actions, gain_values, n_actions)
    gram = (a.T @ a).toarray()
    rhs = a.T @ np.asarray(z, np.float64)
    gram += ridge * max(float(np.diag(gram).mean()), 1e-12) * np.eye(n_actions)
    return np.linalg.solve(gram, rhs)


def joint_gains(z: np.ndarray, actions: np.ndarray, gain_idx: np.ndarray, dirs: np.ndarray,
                n_gains: int) -> np.ndarray:
    """The (G,) gain table minimising sum_i |z_i - sum_k G[j_ik] u_{a_ik}|^2 for given tokens and
    directions (least squares; a gain no token uses stays NaN)."""
    # b[j]: (n, L) the sum of each frame's directions whose token has gain j, so z_i ~ sum_j G[j] b[j]_i
    b = np.stack([_token_matrix(actions, gain_idx == j, len(dirs)) @ np.asarray(dirs, np.float64) for j in range(n_gains)])
    gram = np.einsum("jnl,knl->jk", b, b)
    rhs = np.einsum("jnl,nl->j", b, np.asarray(z, np.float64))
    used = np.diag(gram) > 0
    out = np.full(n_gains, np.nan)
    out[used] = np.linalg.lstsq(gram[np.ix_(used, used)], rhs[used], rcond=None)[0]
    return out


def per_level_update(z: np.ndarray, actions: np.ndarray, gain_idx: np.ndarray, dirs: np.ndarray,
                     gains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dfe 0.4-0.7's update: each direction the gain-weighted mean of the residuals its tokens
    quantize (unnormalised), each gain the mean projection of its tokens (NaN where unused)."""
    num = np.zeros_like(dirs, dtype=np.float64)
    gsum, gcount = np.zeros(len(gains)), np.zeros(len(gains))
    r = z.astype(np.float64)
    for k in range(actions.shape[1]):
        a, g = actions[:, k], gain_idx[:, k]
        np.add.at(num, a, gains[g][:, None] * r)
        np.add.at(gsum, g, (r * dirs[a]).sum(1))
        np.add.at(gcount, g, 1)
        r = r - gains[g][:, None] * dirs[a]
    return num, np.where(gcount > 0, gsum / np.maximum(gcount, 1), np.nan)


def fit_shape_gain(z: np.ndarray, levels: int = 4, n_actions: int = 64, n_gains: int = 4, iters: int = 25,
                   merge_cosine: float = 0.9, min_count: int = 2, seed: int = 0, update: str = "joint",
                   refine_passes: int = 1, distinct_actions: bool = True,
                   on_iteration=None) -> tuple[ShapeGainCodebook, dict]:
    """Train the shared shape-gain codebook on (n, L) latent rows; returns it and training stats.
    ``seed``: the k-means initialisation's random state (the iterations draw nothing). ``update``:
    ``joint`` or ``per-level`` (module docstring). ``refine_passes`` and ``distinct_actions`` (each action
    at most once per frame): the encoder's, used in training (joint update).
    ``on_iteration(relative_error)``: called after each iteration (progress displays)."""
    if update not in CODEBOOK_UPDATES:
        raise ValueError(f"update must be {' or '.join(map(repr, CODEBOOK_UPDATES))}, not {update!r}")
    z = np.asarray(z, dtype=np.float32)
    book = _init(z, levels, n_actions, n_gains, seed)
    dirs, gains = book.directions.copy(), book.gains.copy()
    replaced = merged = 0
    history = []
    energy = max(float((z.astype(np.float64) ** 2).sum(1).mean()), 1e-12)
    joint = update == "joint"
    search = (refine_passes, distinct_actions) if joint else (0, False)  # dfe 0.4-0.7 trained on greedy tokens
    for it in range(iters):
        actions, gain_idx, rebuilt = encode_words(z, dirs, gains, levels, *search)
        r = z - rebuilt
        history.append(float((r.astype(np.float64) ** 2).sum(1).mean() / energy))
        if on_iteration is not None:
            on_iteration(history[-1])
        count = np.bincount(actions.ravel(), minlength=len(dirs))
        live = count >= min_count
        if joint:
            vectors = joint_directions(z, actions, gains[gain_idx], len(dirs))
        else:
            vectors, new_gains = per_level_update(z, actions, gain_idx, dirs, gains)
        dirs = np.where(live[:, None], _unit(vectors), dirs).astype(np.float32)
        if joint:  # the gain table for the new directions
            new_gains = joint_gains(z, actions, gain_idx, dirs, n_gains)
        gains = np.sort(np.maximum(np.where(np.isfinite(new_gains), new_gains, gains), 1e-6)).astype(np.float32)
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
             "iterations": len(history), "update": update}
    return ShapeGainCodebook(dirs, gains), stats


def max_pair_cosine(directions: np.ndarray) -> float:
    """The largest cosine between two different actions."""
    sim = _unit(directions) @ _unit(directions).T
    np.fill_diagonal(sim, -1)
    return float(sim.max()) if len(sim) > 1 else -1.0


def actions_for_data(n_frames: int, requested: int, frames_per_action: int = 8) -> int:
    """The most actions ``n_frames`` training frames support (about ``frames_per_action`` each)."""
    return int(max(2, min(requested, n_frames // frames_per_action)))
