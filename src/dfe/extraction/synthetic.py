"""Synthetic corpora with known ground truth, for tests, benchmarks and ablations.

:func:`action_corpus`: "actions" are smooth bumps on the real canonical mesh (Gaussian of 1 cm
radius around a random vertex, random 3D direction, 0.8 cm amplitude); psi = sum of 1-4 random
actions with intensities in [0.3, 1] plus 0.01 cm noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfe.extraction.expression import PSI_VERSION
from dfe.extraction.mesh import MOUTH_CORNERS, canonical_mesh
from dfe.table import psi_column_names


@dataclass
class ActionCorpus:
    actions: np.ndarray  # (A, 1404) each action's deformation at intensity 1, cm
    centres: np.ndarray  # (A,) vertex each action is centred on
    train: np.ndarray  # (n_train, 1404)
    test: np.ndarray  # (n_test, 1404)
    train_active: np.ndarray  # (n_train, A) intensities
    test_active: np.ndarray


def make_actions(n_actions: int = 20, radius: float = 1.0, amplitude: float = 0.8,
                 seed: int = 0, include_mouth_corner: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(A, 1404) smooth localized deformations and their centre vertices.

    With ``include_mouth_corner`` the first action is centred on the left mouth corner, so tests
    can check that a token lands there.
    """
    rng = np.random.default_rng(seed)
    verts = canonical_mesh().vertices
    centres = rng.choice(len(verts), size=n_actions, replace=False)
    if include_mouth_corner:
        centres[0] = MOUTH_CORNERS[0]
    actions = np.zeros((n_actions, len(verts), 3))
    for a, c in enumerate(centres):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        d2 = np.sum((verts - verts[c]) ** 2, axis=1)
        actions[a] = amplitude * np.exp(-d2 / (2 * radius**2))[:, None] * direction
    return actions.reshape(n_actions, -1).astype(np.float32), centres


def _mix(actions: np.ndarray, n: int, rng: np.random.Generator, noise: float,
         max_active: int = 4) -> tuple[np.ndarray, np.ndarray]:
    n_actions = len(actions)
    weights = np.zeros((n, n_actions), dtype=np.float32)
    for i in range(n):
        k = rng.integers(1, max_active + 1)
        idx = rng.choice(n_actions, size=k, replace=False)
        weights[i, idx] = rng.uniform(0.3, 1.0, size=k)
    psi = weights @ actions + rng.normal(scale=noise, size=(n, actions.shape[1])).astype(np.float32)
    return psi.astype(np.float32), weights


def action_corpus(n_train: int = 20_000, n_test: int = 2_000, n_actions: int = 20,
                  noise: float = 0.01, seed: int = 0) -> ActionCorpus:
    actions, centres = make_actions(n_actions, seed=seed)
    rng = np.random.default_rng(seed + 1)
    train, w_train = _mix(actions, n_train, rng, noise)
    test, w_test = _mix(actions, n_test, rng, noise)
    return ActionCorpus(actions, centres, train, test, w_train, w_test)


def action_recovery(code_deformations: np.ndarray, actions: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """For each action, the best cosine between it and any code's deformation (A,).
    An action counts as recovered when this is >= ``threshold``."""
    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    return (unit(actions) @ unit(code_deformations).T).max(axis=1)


# ---------------------------------------------------------------------------- sequences over time

def action_profile(rise: int, fall: int) -> np.ndarray:
    """Intensity of one action over time: 0 -> 1 in ``rise`` frames, back to 0 in ``fall`` frames."""
    up = np.arange(1, rise + 1) / rise
    down = np.arange(fall - 1, -1, -1) / fall
    return np.concatenate([up, down])


@dataclass
class EventSequences:
    """Videos of timed actions with a known class (see :func:`event_sequences`)."""

    videos: list  # per-video tables (pandas): video, frame, timestamp, face_id, success, psi_kind, psi_*
    y: np.ndarray  # "fast onset" (class A) or "slow onset" (class B)
    y_null: np.ndarray  # random labels: the null control
    actions: np.ndarray  # (A, 1404)


def event_sequences(n_videos: int = 80, n_frames: int = 240, fps: float = 30.0, n_actions: int = 6,
                    events_per_video: int = 8, rise: int = 3, fall: int = 15, noise: float = 0.01,
                    seed: int = 0) -> EventSequences:
    """Class A videos: actions with a fast onset (``rise`` frames) and a slow offset (``fall``);
    class B: the same kind of video reversed in time (slow onset, fast offset). Each video is drawn
    independently and its class is a coin flip, so both classes have the same per-frame
    distribution by construction; only the order of frames tells them apart. ``y_null`` is a
    second coin flip per video, unrelated to the frames. Actions are the first ``n_actions`` of
    :func:`make_actions` (seed 0), the ones :func:`action_corpus` uses."""
    import pandas as pd

    actions, _ = make_actions(20, seed=0)
    actions = actions[:n_actions]
    rng = np.random.default_rng(seed)
    profile = action_profile(rise, fall)
    videos, ys = [], []
    for v in range(n_videos):
        weights = np.zeros((n_frames, n_actions), dtype=np.float32)
        for _ in range(events_per_video):
            a = rng.integers(n_actions)
            start = rng.integers(0, n_frames - len(profile))
            seg = weights[start:start + len(profile), a]
            weights[start:start + len(profile), a] = np.maximum(seg, rng.uniform(0.6, 1.0) * profile)
        label = "fast onset" if rng.random() < 0.5 else "slow onset"
        if label == "slow onset":
            weights = weights[::-1]
        psi = weights @ actions + rng.normal(scale=noise, size=(n_frames, actions.shape[1])).astype(np.float32)
        meta = pd.DataFrame({"video": f"seq{v:03d}", "frame": np.arange(n_frames), "timestamp": np.arange(n_frames) / fps,
                             "face_id": 0, "success": 1, "psi_kind": "geometry", "psi_version": PSI_VERSION})
        block = pd.DataFrame(psi.astype(np.float32), columns=psi_column_names(psi.shape[1]))
        videos.append(pd.concat([meta, block], axis=1))
        ys.append(label)
    y_null = np.where(rng.random(n_videos) < 0.5, "a", "b")
    return EventSequences(videos, np.asarray(ys), y_null, actions)
