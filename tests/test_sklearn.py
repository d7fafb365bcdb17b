"""scikit-learn's rules for dfe's estimators.

ResidualKMeans takes arrays: it runs every check of ``parametrize_with_checks``. The per-video
transformers take a list of frame tables, which sklearn's checks cannot build; they run the checks
that need no data (parameter validation, cloning, get/set_params, repr, tags, an unfitted
transform) and, on tables, the rules those checks test on arrays: ``fit`` returns self and
learns only ``*_`` attributes, ``transform`` changes nothing on the estimator, gives what
``fit_transform`` gives, and raises NotFittedError before ``fit`` unless the transformer learns
nothing (then it works unfitted, as sklearn's ``Normalizer``).
"""

from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from dfe.analysis.features import (ActionUnitFunctionals, BagOfTokens, BlendshapeBoW, BlendshapeFunctionals,
                                   EventFeatures, PsiFunctionals, UserFeatures)
from dfe.table import AU_INTENSITY_COLUMNS, BLENDSHAPE_COLUMNS
from dfe.tokens.residual_kmeans import ResidualKMeans


@parametrize_with_checks([ResidualKMeans(n_codes=4, n_levels=2, n_init=1)])
def test_residual_kmeans_passes_scikit_learns_checks(estimator, check):
    check(estimator)


def frame_tables(n_videos: int = 4, n_frames: int = 30, seed: int = 0) -> list[pd.DataFrame]:
    """Small tables with every column the transformers read: 2 token levels over 8 codes (runs of
    a code, so events form), strengths, blendshapes, action units, 2 vertices of psi; 3 failed
    frames each."""
    rng = np.random.default_rng(seed)
    videos = []
    for v in range(n_videos):
        runs = np.repeat(rng.integers(0, 8, (n_frames // 5, 2)), 5, axis=0)
        df = pd.DataFrame({"video": f"v{v}", "timestamp": np.arange(n_frames) / 10.0, "face_id": 0,
                           "success": 1, "tok_1": runs[:, 0], "tok_2": runs[:, 1],
                           "strength_1": rng.random(n_frames), "strength_2": rng.random(n_frames)})
        block = pd.DataFrame(rng.random((n_frames, len(BLENDSHAPE_COLUMNS) + len(AU_INTENSITY_COLUMNS) + 6)),
                             columns=BLENDSHAPE_COLUMNS + AU_INTENSITY_COLUMNS + [f"psi_{i}" for i in range(6)])
        df = pd.concat([df, block], axis=1)
        df.loc[:2, "success"] = 0
        df.loc[:2, ["tok_1", "tok_2"]] = -1
        videos.append(df)
    return videos


TABLES = frame_tables()
TABLE_TRANSFORMERS = [
    BagOfTokens(8, weighting="tfidf", bigrams=True),
    BlendshapeFunctionals(),
    ActionUnitFunctionals(),
    PsiFunctionals(),
    BlendshapeBoW(n_words=4),
    EventFeatures(8, max_gap=0.0, min_duration=0.0),
    UserFeatures(pd.DataFrame({"video": [f"v{i}" for i in range(4)], "a": [1.0, 2, 3, 4], "b": [0.0, 1, 0, 1]})),
]
LEARN_NOTHING = (BlendshapeFunctionals, PsiFunctionals)
DATA_FREE_CHECKS = ["check_no_attributes_set_in_init", "check_parameters_default_constructible",
                    "check_get_params_invariance", "check_set_params", "check_do_not_raise_errors_in_init_or_set_params",
                    "check_param_validation", "check_estimator_cloneable", "check_estimator_repr", "check_mixin_order",
                    "check_valid_tag_types", "check_estimator_tags_renamed"]


def name_of(estimator) -> str:
    return type(estimator).__name__


@pytest.mark.parametrize("check_name", DATA_FREE_CHECKS)
@pytest.mark.parametrize("transformer", TABLE_TRANSFORMERS, ids=name_of)
def test_table_transformers_pass_scikit_learns_checks_that_need_no_data(transformer, check_name):
    getattr(estimator_checks, check_name)(name_of(transformer), transformer)


def dense(m) -> np.ndarray:
    return m.toarray() if sparse.issparse(m) else np.asarray(m)


@pytest.mark.parametrize("transformer", TABLE_TRANSFORMERS, ids=name_of)
def test_table_transformers_follow_the_fit_transform_rules(transformer):
    est = clone(transformer)
    before = set(vars(est))
    if isinstance(est, LEARN_NOTHING):
        unfitted = dense(est.transform(TABLES))
    else:
        with pytest.raises(NotFittedError):
            est.transform(TABLES)
    assert est.fit(TABLES) is est
    learned = set(vars(est)) - before
    assert all(a.endswith("_") and not a.startswith("_") for a in learned)
    assert bool(learned) != isinstance(est, LEARN_NOTHING)
    state = joblib.hash(vars(est))
    est.transform(TABLES[1:])
    assert joblib.hash(vars(est)) == state  # transform wrote nothing, on other videos than fit's either
    out = dense(est.transform(TABLES))
    assert out.shape[0] == len(TABLES) and np.isfinite(out).all() and out.any()
    np.testing.assert_allclose(dense(clone(transformer).fit_transform(TABLES)), out)
    np.testing.assert_allclose(dense(est.transform(TABLES[::-1])), out[::-1])  # one row per video, in order
    if isinstance(est, LEARN_NOTHING):
        np.testing.assert_allclose(unfitted, out)


@pytest.mark.parametrize("transformer", TABLE_TRANSFORMERS, ids=name_of)
def test_clone_and_set_params_round_trip(transformer):
    params = transformer.get_params()
    twin = clone(transformer)
    assert twin is not transformer and joblib.hash(twin.get_params()) == joblib.hash(params)
    assert not [a for a in vars(twin) if a.endswith("_")]  # a clone holds no fitted state
    assert twin.set_params(**params) is twin and joblib.hash(twin.get_params()) == joblib.hash(params)


@pytest.mark.parametrize("transformer, bad, message", [
    (BagOfTokens(), {"weighting": "bogus"}, "'weighting' parameter of BagOfTokens must be a str among"),
    (BagOfTokens(), {"norm": "l3"}, "'norm' parameter of BagOfTokens must be a str among .* or None"),
    (BagOfTokens(), {"levels": "flat"}, "'levels' parameter"),
    (BagOfTokens(), {"codebook_size": 0}, "'codebook_size' parameter of BagOfTokens must be an int in the range"),
    (BagOfTokens(), {"strength": True, "levels": "weighted"}, "strength=True needs levels 'pooled' or 'per_level'"),
    (EventFeatures(), {"source": "audio"}, "'source' parameter of EventFeatures must be a str among"),
    (EventFeatures(), {"max_gap": -1.0}, "'max_gap' parameter of EventFeatures must be a float in the range"),
    (BlendshapeBoW(), {"random_state": "seven"}, "'random_state' parameter of BlendshapeBoW"),
    (UserFeatures(), {}, "'table' parameter of UserFeatures must be an instance of 'pandas"),
])
def test_a_bad_parameter_fails_in_fit_in_one_sentence(transformer, bad, message):
    est = clone(transformer).set_params(**bad)  # __init__ and set_params only store
    with pytest.raises(ValueError, match=message) as error:
        est.fit(TABLES)
    assert "\n" not in str(error.value)


def test_bag_counts_skipped_frames_in_fit_only():
    bag = BagOfTokens(8).fit(TABLES[:2])
    assert bag.n_skipped_ == 2 * 3  # three failed frames in each training table
    bag.transform(TABLES)
    assert bag.n_skipped_ == 6


def test_blendshape_words_follow_random_state():
    words = [BlendshapeBoW(n_words=4, random_state=seed).fit(TABLES).kmeans_.cluster_centers_ for seed in (0, 0, 1)]
    np.testing.assert_array_equal(words[0], words[1])
    assert not np.allclose(words[0], words[2])


def test_residual_kmeans_levels_follow_random_state():
    X = np.random.default_rng(0).normal(size=(200, 3))
    fits = [ResidualKMeans(8, 2, n_init=1, random_state=seed).fit(X).codebooks_ for seed in (3, 3, 4)]
    np.testing.assert_array_equal(fits[0], fits[1])
    assert not np.allclose(fits[0], fits[2])
