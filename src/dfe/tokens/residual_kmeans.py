"""Residual k-means: the strongest simple quantizer at the tokens' bit budget, with no network.

Level 1 is k-means on the vectors; level k is k-means on what levels 1..k-1 leave over. A vector
is coded as one centre index per level (K x log2(N) bits, exactly the tokens' budget) and rebuilt
as the sum of its centres. dfe's tokens must beat it to be worth their network.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_array, check_is_fitted, validate_data


def nearest_centres(rows: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of each row's nearest centre (squared Euclidean distance, one matrix product)."""
    return np.argmin((centres**2).sum(1)[None] - 2 * rows @ centres.T, axis=1)


class ResidualKMeans(TransformerMixin, BaseEstimator):
    """K levels of N centres each, fitted greedily on residuals (scikit-learn estimator).

    ``transform`` gives the (n, K) code indices; ``inverse_transform`` the rebuilt vectors;
    ``codebooks_`` is (K, N, D); ``inertia_`` the squared error left after each level;
    ``n_iter_`` the k-means iterations of all levels together. Every level's k-means draws from one
    ``random_state``. With fewer vectors than ``n_codes``, each level has one centre per vector.
    """

    _parameter_constraints = {
        "n_codes": [Interval(Integral, 1, None, closed="left")],
        "n_levels": [Interval(Integral, 1, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_codes: int = 256, n_levels: int = 4, n_init: int = 4, max_iter: int = 300,
                 tol: float = 1e-4, random_state=0):
        self.n_codes = n_codes
        self.n_levels = n_levels
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        from sklearn.cluster import KMeans

        residual = validate_data(self, X, dtype=np.float64, copy=True)
        random_state = check_random_state(self.random_state)
        n_codes = min(self.n_codes, len(residual))
        books, inertia, n_iter = [], [], 0
        for _ in range(self.n_levels):
            km = KMeans(n_codes, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                        random_state=random_state).fit(residual)
            centres = km.cluster_centers_
            residual -= centres[km.labels_]
            books.append(centres)
            inertia.append(float((residual**2).sum()))
            n_iter += int(km.n_iter_)
        self.codebooks_ = np.stack(books)
        self.inertia_ = np.asarray(inertia)
        self.n_iter_ = n_iter
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "codebooks_")
        residual = validate_data(self, X, dtype=np.float64, copy=True, reset=False)
        codes = np.empty((len(residual), len(self.codebooks_)), dtype=np.int64)
        for level, book in enumerate(self.codebooks_):
            codes[:, level] = nearest_centres(residual, book)
            residual -= book[codes[:, level]]
        return codes

    def inverse_transform(self, codes) -> np.ndarray:
        check_is_fitted(self, "codebooks_")
        codes = check_array(codes, dtype=np.int64)
        return sum(self.codebooks_[level][codes[:, level]] for level in range(codes.shape[1]))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []  # transform gives integer codes whatever the input's dtype
        return tags

    @property
    def bits(self) -> int:
        return int(self.n_levels * np.ceil(np.log2(self.n_codes)))
