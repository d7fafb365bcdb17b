"""The non-negative unit fit that per-frame AUs' neighbours and the atlas's names both stand on."""

import numpy as np

from dfe.extraction.units import unit_basis, unit_contributions


def test_a_sum_of_units_is_recovered_whatever_the_columns_scale():
    basis, units = unit_basis()
    rng = np.random.default_rng(0)
    chosen = rng.choice(basis.shape[1], 4, replace=False)
    weights = np.zeros(basis.shape[1])
    weights[chosen] = rng.uniform(0.2, 1.0, 4)
    parts, cosine = unit_contributions(basis @ weights, basis)
    assert cosine > 0.999
    assert np.allclose(parts, weights * np.linalg.norm(basis, axis=0), atol=1e-4)  # each unit's cm in the fit
    rescaled, _ = unit_contributions(basis @ weights, basis * np.linspace(0.5, 2.0, basis.shape[1]))
    assert np.allclose(rescaled, parts, atol=1e-4)
    assert unit_contributions(np.zeros(basis.shape[0]), basis)[1] == 0.0
