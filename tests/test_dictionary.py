"""The shape-gain dictionary (dfe.tokens.dictionary, the default quantizer) on real frames of ../shared."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

import dfe
from dfe.tokens.dictionary import (_replace, _unit, encode_words, fit_shape_gain, joint_directions, joint_gains,
                                  max_pair_cosine)
from dfe.table import find_tables, psi_array, read_table
from dfe.tokens.networks import RVQVAE, make_patches, nearest_words
from dfe.tokens.tokenizer import Standardiser, Tokenizer
from dfe.tokens.config import TokenizerConfig
from dfe.tokens.tables import fit_tables

STARTER = Path(dfe.__file__).parent / "data" / "starter.dfe"


@pytest.fixture(scope="module")
def real_psi(extracted):
    return np.concatenate([psi_array(read_table(p)) for p in find_tables([extracted])])


@pytest.fixture(scope="module")
def shape_gain(extracted):
    return fit_tables([extracted], progress=False, codebook_size=64, gain_levels=4, seed=0)


def test_tokens_are_actions_with_intensities(shape_gain, real_psi):
    tok = shape_gain
    assert tok.config.quantizer == "shape-gain" and tok.gain_levels == 4
    assert tok.summary.val_cosine >= 0.8, tok.summary  # held-out videos/photos; measured ~0.9
    tokens = tok.encode(real_psi)
    # a token id is action * G + intensity: the word is exactly the action's direction times a gain
    dirs = tok.model.directions.numpy()
    gains = tok.model.gains.numpy()
    words = tok.model.codebook.numpy()
    np.testing.assert_allclose(words[4 * 3 + 2], gains[2] * dirs[3], rtol=1e-5)
    assert np.all(np.diff(gains) > 0) and np.allclose(np.linalg.norm(dirs, axis=1), 1, atol=1e-4)
    # one exact deformation per token, summed over levels
    bias = tok.decode(np.zeros((1, 0), np.int64))[0]
    summed = bias + sum(tok.decode_code(tokens[:20, k]) for k in range(tok.levels))
    np.testing.assert_allclose(tok.decode(tokens[:20]), summed, atol=1e-4)
    # words of one action differ only in size: the atlas shows each action once
    assert set(tok.action_codes(np.arange(64)).tolist()) == set(range(3, 64, 4))
    # distinct actions: merged while training, so no two of them are near-duplicates
    assert max_pair_cosine(dirs) < 0.95


def test_encoder_search_is_exact_per_level(shape_gain, real_psi):
    """Greedy level 1 is the (action, gain) pair that minimises the error, checked by brute force."""
    import torch

    tok = shape_gain
    z = tok.model.encoder(torch.from_numpy(tok.standardiser.forward(real_psi[:200]))).detach().numpy()
    words = tok.model.codebook.numpy()
    err = ((z[:, None, :] - words[None]) ** 2).sum(2)  # (n, words)
    w = tok.model.codebook
    got, _ = nearest_words(torch.from_numpy(z), w, 0.5 * (w**2).sum(1))
    rows = np.arange(len(z))
    np.testing.assert_allclose(err[rows, got.numpy()], err.min(1), rtol=1e-4, atol=1e-4)  # ties: neutral photos
    moving = np.linalg.norm(z, axis=1) > 1e-3
    assert moving.sum() > 50 and (got.numpy()[moving] == err.argmin(1)[moving]).mean() > 0.98
    # refinement never makes a frame worse than plain greedy
    greedy = tok.config.refine_passes
    tok.config.refine_passes = 0
    plain = tok.reconstruction_error(real_psi)
    tok.config.refine_passes = greedy
    assert np.all(tok.reconstruction_error(real_psi) <= plain + 1e-5)


def test_replaced_codes_never_clone_a_live_code(real_psi):
    rng = np.random.default_rng(0)
    dirs = _unit(rng.normal(size=(8, real_psi.shape[1]))).astype(np.float32)
    dirs[5] = dirs[1]  # a freed code that sits on a live one
    live = np.ones(8, bool)
    live[[5, 6]] = False
    resid = np.concatenate([np.repeat(dirs[1:2] * 3, 5, axis=0), real_psi[:50]])  # worst residuals: live code 1
    assert _replace(dirs, np.array([5, 6]), live, resid, 0.9) == 2
    sim = _unit(dirs) @ _unit(dirs).T
    np.fill_diagonal(sim, -1)
    assert sim[[5, 6]].max() < 0.9


def test_joint_update_is_the_least_squares_codebook_for_given_tokens():
    rng = np.random.default_rng(3)
    true = rng.normal(size=(6, 5))
    actions = rng.integers(0, 6, size=(400, 3))
    gain_values = rng.choice([0.5, 1.0, 2.0], size=(400, 3))
    z = (gain_values[..., None] * true[actions]).sum(1)  # frames made exactly of these tokens
    np.testing.assert_allclose(joint_directions(z, actions, gain_values, 6, ridge=0.0), true, atol=1e-8)
    # the gain table, for given unit directions: each token's gain index into a table of 3
    dirs = _unit(true)
    table = np.array([0.3, 0.8, 1.7])
    gi = rng.integers(0, 3, size=(400, 3))
    z = (table[gi][..., None] * dirs[actions]).sum(1)
    np.testing.assert_allclose(joint_gains(z, actions, gi, dirs, 3), table, atol=1e-8)
    # a gain no token uses is NaN (the fit keeps the old value)
    assert np.isnan(joint_gains(z, actions, np.minimum(gi, 1), dirs, 3)[2])


def saved_with_config(tok, path: Path, drop=(), **changes) -> Tokenizer:
    """``tok`` written to ``path`` with its file's config edited (knobs dropped or changed), loaded back."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    tok.save(path)
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    cfg = {k: v for k, v in json.loads(meta["config"]).items() if k not in drop}
    save_file(tensors, str(path), metadata={**meta, "config": json.dumps({**cfg, **changes})})
    return Tokenizer.load(path)


def test_a_frame_uses_each_action_once_and_old_models_may_repeat_them(shape_gain, real_psi, tmp_path):
    """dfe 0.8 encodes each action at most once per frame (one intensity each, as FACS codes a unit);
    the same dictionary searched as dfe 0.7 did repeats actions on some frames."""
    acts = shape_gain.actions(shape_gain.encode(real_psi))
    assert all(len(set(row)) == len(row) for row in acts.tolist())
    free = saved_with_config(shape_gain, tmp_path / "free.dfe", distinct_actions=False)
    again = free.actions(free.encode(real_psi))
    repeats = np.mean([len(set(row)) < len(row) for row in again.tolist()])
    assert repeats > 0.05, repeats  # measured 0.18 of these frames


def test_joint_update_rebuilds_real_frames_better_than_per_level(real_psi):
    # the latent the tokenizer quantizes: principal directions of the (globally scaled) real frames
    x = real_psi / real_psi.std()
    z = (x @ np.linalg.svd(x, full_matrices=False)[2][:32].T).astype(np.float32)

    def error(update: str) -> float:
        """Relative error of the trained codebook, every one read by the same (default) encoder."""
        book, _ = fit_shape_gain(z, levels=4, n_actions=16, n_gains=4, iters=10, update=update)
        rebuilt = encode_words(z, book.directions, book.gains, 4, refine_passes=1, distinct_actions=True)[2]
        return float(((z - rebuilt) ** 2).sum(1).mean() / (z**2).sum(1).mean())

    errors = {u: error(u) for u in ("joint", "per-level")}
    # measured on these frames: 0.0214 joint vs 0.0240 per-level (0.89x); the per-level update on the
    # encoder's refined tokens reaches 0.0230 (0.96x): the least squares, not the tokens, make the gain
    assert errors["joint"] < 0.93 * errors["per-level"], errors
    with pytest.raises(ValueError, match="update must be"):
        fit_shape_gain(z, update="mean")


def test_small_corpus_gets_fewer_actions_with_a_warning(real_psi, caplog):
    psi = real_psi[:120]
    with caplog.at_level(logging.WARNING, logger="dfe.tokens.tokenizer"):
        tok = Tokenizer.fit(psi, progress=False, codebook_size=256, gain_levels=4)
    n_train = tok.summary.n_train
    assert tok.config.n_actions == n_train // 8 and tok.codebook_size == 4 * (n_train // 8)
    assert f"using {n_train // 8} actions" in caplog.text
    assert tok.encode(psi).max() < tok.codebook_size


def test_model_file_says_which_quantizer_and_old_files_load(shape_gain, real_psi, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = shape_gain.save(tmp_path / "sg.dfe")
    back = Tokenizer.load(path)
    assert back.config.quantizer == "shape-gain"
    np.testing.assert_array_equal(back.encode(real_psi), shape_gain.encode(real_psi))
    # a model file from before the quantizer option (no "quantizer" in its config) is an rvq-vae
    cfg = TokenizerConfig(quantizer="rvq-vae", codebook_size=16)  # untrained: only the file format matters
    old = Tokenizer(cfg, RVQVAE(cfg, make_patches(cfg)), Standardiser.fit(real_psi, "geometry"))
    p = old.save(tmp_path / "old.dfe")
    with safe_open(str(p), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    for knob in ("quantizer", "gain_levels", "merge_cosine", "lloyd_iters", "refine_passes", "codebook_update",
                 "distinct_actions"):
        del cfg[knob]
    meta["config"] = json.dumps(cfg)
    save_file(tensors, str(tmp_path / "legacy.dfe"), metadata=meta)
    legacy = Tokenizer.load(tmp_path / "legacy.dfe")
    assert legacy.config.quantizer == "rvq-vae"
    assert back.config.codebook_update == "joint"
    # a shape-gain file from dfe 0.4-0.7 (no codebook_update in its config) says how it was trained
    sg07 = saved_with_config(shape_gain, tmp_path / "sg07.dfe", drop=("codebook_update", "distinct_actions"))
    # ... and encodes as they did: an action may come back at another level
    assert sg07.config.codebook_update == "per-level" and sg07.config.distinct_actions is False
    np.testing.assert_array_equal(legacy.encode(real_psi), old.encode(real_psi))
    np.testing.assert_allclose(legacy.decode(legacy.encode(real_psi[:5])), old.decode(old.encode(real_psi[:5])))


def test_a_dfe_07_model_file_encodes_as_dfe_07_did(corpus):
    """tests/data/shape_gain_dfe07.dfe: a small shape-gain model (8 actions x 4 intensities) fitted and
    saved by dfe 0.7 (commit a256d15) on the synthetic corpus; the tokens below are what dfe 0.7 gave."""
    old = Tokenizer.load(Path(__file__).parent / "data" / "shape_gain_dfe07.dfe")
    assert old.config.codebook_update == "per-level" and old.config.distinct_actions is False
    assert old.encode(corpus.test[:8]).tolist() == [[3, 19, 16, 24], [15, 21, 9, 21], [26, 8, 8, 8], [18, 29, 16, 12],
                                                    [6, 4, 16, 24], [27, 31, 5, 1], [14, 0, 12, 0], [1, 24, 16, 24]]


def test_refinement_with_distinct_actions_never_raises_the_error():
    import torch

    from dfe.tokens.networks import refined_residual_search

    rng = np.random.default_rng(5)
    words = torch.from_numpy(rng.normal(size=(40, 6)).astype(np.float32))  # 10 actions x 4 intensities
    z = torch.from_numpy(rng.normal(size=(300, 6)).astype(np.float32) * 2)
    err = {p: ((z - refined_residual_search(z, words, 4, p, group=4)[1]) ** 2).sum(1) for p in (0, 1, 2)}
    assert (err[1] <= err[0] + 1e-4).all() and (err[2] <= err[1] + 1e-4).all()
    ids = refined_residual_search(z, words, 4, 2, group=4)[0]
    assert all(len(set(row)) == 4 for row in (ids // 4).tolist())
    # fewer actions than levels: the rule cannot hold, so it is not applied (no -inf scores)
    ids, total = refined_residual_search(z, words[:8], 4, 1, group=4)
    assert torch.isfinite(total).all() and ids.max() < 8


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_distinct_action_encoding_runs_on_a_gpu(shape_gain, real_psi):
    cpu = shape_gain.encode(real_psi)
    try:
        np.testing.assert_array_equal(shape_gain.to("cuda").encode(real_psi), cpu)
    finally:
        shape_gain.to("cpu")


def test_starter_encodes_as_before_and_decodes_its_actions_and_gains(corpus):
    tok = Tokenizer.load(STARTER)
    tokens = tok.encode(corpus.test[:6])
    # the tokens of the starter retrained in dfe 0.8 (64 actions x 4 intensities, joint update, distinct
    # actions): a guard for refactors
    assert tokens.tolist() == [[157, 177, 64, 96], [237, 133, 244, 84], [216, 212, 52, 0], [125, 132, 40, 160],
                               [248, 0, 132, 220], [2, 149, 132, 52]]
    # token a * G + g is gains[g] * directions[a]; psi_hat = mean + scale (b + W sum of the words)
    dirs, gains = tok.model.directions.numpy(), tok.model.gains.numpy()
    latent = (gains[tokens % len(gains)][..., None] * dirs[tokens // len(gains)]).sum(1)
    w, b = tok.model.decoder.weight.detach().numpy(), tok.model.decoder.bias.detach().numpy()
    expected = (latent @ w.T + b) * tok.standardiser.scale + tok.standardiser.mean
    np.testing.assert_allclose(tok.decode(tokens), expected, rtol=1e-5, atol=1e-6)


def test_gain_weighted_bag_counts_actions_with_their_intensity():
    """With a shape-gain model's gains, token c * G + g counts into action c with weight gains[g]
    (counted by hand); failed frames count nothing; a vocabulary that is not a multiple of G fails."""
    import pandas as pd

    from dfe.analysis.features import BagOfTokens, FeatureError

    gains = [0.5, 1.0, 2.0, 4.0]
    df = pd.DataFrame({"success": [1, 1, 0], "tok_1": [2, 2, -1], "tok_2": [0, 7, -1]})
    pooled = BagOfTokens(8, norm=None, gains=gains).fit([df]).transform([df]).toarray()[0]
    np.testing.assert_allclose(pooled, [2.0 + 2.0 + 0.5, 4.0])  # tokens 2, 2, 0 -> action 0; 7 -> action 1
    per = BagOfTokens(8, levels="per_level", norm=None, gains=gains).fit([df]).transform([df]).toarray()[0]
    np.testing.assert_allclose(per, [4.0, 0.0, 0.5, 4.0])
    with pytest.raises(FeatureError, match="multiple"):
        BagOfTokens(6, gains=gains).fit([df])


def test_gain_bag_is_offered_for_shape_gain_models_only():
    """evaluate-task and dfe study add the gain-weighted bag for a model whose tokens the tables carry
    and that has intensities (the bundled starter), and not without one."""
    from types import SimpleNamespace

    from dfe.analysis.task import GAIN_BAG, gain_bag
    from dfe.runs.demo import starter_model_path

    tok = Tokenizer.load(starter_model_path())
    bag = gain_bag(tok, tok.codebook_size)
    assert list(bag) == [GAIN_BAG] and list(bag[GAIN_BAG].gains) == list(tok.intensities)
    assert gain_bag(None, 256) == {} and gain_bag(SimpleNamespace(codebook_size=256), 256) == {}


def test_strength_weighted_bag_counts_intensity():
    import pandas as pd

    from dfe.analysis.features import BagOfTokens

    df = pd.DataFrame({"success": [1, 1, 0], "tok_1": [2, 2, -1], "tok_2": [0, 3, -1],
                       "strength_1": [0.5, 0.25, np.nan], "strength_2": [-0.1, 1.0, np.nan]})
    vec = BagOfTokens(4, norm=None, strength=True).fit([df]).transform([df]).toarray()[0]
    np.testing.assert_allclose(vec, [0.0, 0.0, 0.75, 1.0])  # negative strengths count 0, failed frames not at all
    per = BagOfTokens(4, levels="per_level", norm=None, strength=True).fit([df]).transform([df]).toarray()[0]
    np.testing.assert_allclose(per, [0, 0, 0.75, 0, 0, 0, 0, 1.0])
    assert BagOfTokens(4, norm=None).fit([df]).transform([df]).toarray()[0].tolist() == [1, 0, 2, 1]
