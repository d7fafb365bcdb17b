"""Residual k-means, the equal-bit baseline the tokens are measured against."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

from dfe.tokens.residual_kmeans import ResidualKMeans
from dfe.tokens.tokenizer import cosine_rows


def test_two_levels_by_hand():
    # level 1 must find the two clusters at x = 0 and x = 10 (residual error 4 x 1^2 = 4 left);
    # level 2 the residual offsets y = +1 and y = -1 (nothing left)
    X = np.array([[0.0, 1], [0, -1], [10, 1], [10, -1]])
    rkm = ResidualKMeans(n_codes=2, n_levels=2, n_init=4, random_state=0).fit(X)
    np.testing.assert_allclose(sorted(map(tuple, rkm.codebooks_[0])), [(0, 0), (10, 0)], atol=1e-9)
    np.testing.assert_allclose(sorted(map(tuple, rkm.codebooks_[1])), [(0, -1), (0, 1)], atol=1e-9)
    np.testing.assert_allclose(rkm.inertia_, [4.0, 0.0], atol=1e-9)
    codes = rkm.transform(X)
    assert codes.shape == (4, 2) and codes.dtype == np.int64
    np.testing.assert_allclose(rkm.inverse_transform(codes), X, atol=1e-9)
    # a new point is coded greedily: nearest level-1 centre, then nearest centre to what is left
    np.testing.assert_allclose(rkm.inverse_transform(rkm.transform([[9.0, 0.8]])), [[10, 1]], atol=1e-9)
    assert rkm.bits == 2


def test_beats_one_word_on_additive_actions(corpus):
    train, test = corpus.train[:3000], corpus.test[:500]
    rkm = ResidualKMeans(n_codes=32, n_levels=4, n_init=2, random_state=0).fit(train)
    rebuilt = rkm.inverse_transform(rkm.transform(test))
    word = KMeans(32, n_init=2, random_state=0).fit(train)
    one_word = word.cluster_centers_[word.predict(test)]
    cos_rkm, cos_word = cosine_rows(rebuilt, test).mean(), cosine_rows(one_word, test).mean()
    print(f"held-out cosine: residual k-means {cos_rkm:.3f}, one k-means word {cos_word:.3f}")
    assert cos_rkm > cos_word + 0.05
    assert np.all(np.diff(rkm.inertia_) < 0)  # every level removes error
