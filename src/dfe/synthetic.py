"""Synthetic corpora with known ground truth, for tests, benchmarks and ablations.

:func:`action_corpus`: "actions" are smooth bumps on the real canonical mesh (Gaussian of 1 cm
radius around a random vertex, random 3D direction, 0.8 cm amplitude); psi = sum of 1-4 random
actions with intensities in [0.3, 1] plus 0.01 cm noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfe.mesh import MOUTH_CORNERS, canonical_mesh


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
