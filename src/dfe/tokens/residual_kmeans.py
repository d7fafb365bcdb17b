"""Residual k-means: the strongest simple quantizer at the tokens' bit budget, with no network.

Level 1 is k-means on the vectors; level k is k-means on what levels 1..k-1 leave over. A vector
is coded as one centre index per level (K x log2(N) bits, exactly the tokens' budget) and rebuilt
as the sum of its centres. dfe's tokens must beat it to be worth their network.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted


def nearest_centres(rows: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of each row's nearest centre (squared Euclidean distance, one matrix product)."""
    return np.argmin((centres**2).sum(1)[None] - 2 * rows @ centres.T, axis=1)


class ResidualKMeans(TransformerMixin, BaseEstimator):
    """K levels of N centres each, fitted greedily on residuals (scikit-learn estimator).

    ``transform`` gives the (n, K) code indices; ``inverse_transform`` the rebuilt vectors;
    ``codebooks_`` is (K, N, D); ``inertia_`` the squared error left after each level.
    """

    def __init__(self, n_codes: int = 256, n_levels: int = 4, n_init: int = 4, max_iter: int = 300,
                 tol: float = 1e-4, random_state: int | None = 0):
        self.n_codes = n_codes
        self.n_levels = n_levels
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def fit(self, X, y=None):
        from sklearn.cluster import KMeans

        X = np.asarray(X, dtype=np.float64)
        n_codes = min(self.n_codes, len(X))
        residual = X.copy()
        books, inertia, iterations = [], [], []
        for level in range(self.n_levels):
            seed = None if self.random_state is None else self.random_state + level
            km = KMeans(n_codes, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol, random_state=seed).fit(residual)
            centres = km.cluster_centers_
            residual -= centres[km.labels_]
            books.append(centres)
            inertia.append(float((residual**2).sum()))
            iterations.append(int(km.n_iter_))
        self.codebooks_ = np.stack(books)
        self.inertia_ = np.asarray(inertia)
        self.n_iter_ = np.asarray(iterations)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "codebooks_")
        residual = np.asarray(X, dtype=np.float64).copy()
        codes = np.empty((len(residual), len(self.codebooks_)), dtype=np.int64)
        for level, book in enumerate(self.codebooks_):
            codes[:, level] = nearest_centres(residual, book)
            residual -= book[codes[:, level]]
        return codes

    def inverse_transform(self, codes) -> np.ndarray:
        check_is_fitted(self, "codebooks_")
        codes = np.asarray(codes, dtype=np.int64)
        return sum(self.codebooks_[level][codes[:, level]] for level in range(codes.shape[1]))

    @property
    def bits(self) -> int:
        return int(self.n_levels * np.ceil(np.log2(self.n_codes)))
