"""The tokenizer on a synthetic corpus with known actions, and on real tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfe.extraction.synthetic import action_recovery
from dfe.table import psi_array, read_table, token_columns
from dfe.tokens.config import TokenizerConfig
from dfe.tokens.networks import RVQVAE, ShapeGainModel, make_patches
from dfe.tokens.tokenizer import ModelError, Standardiser, Tokenizer, cosine_rows, tied_keys

from conftest import run_dfe

# the first draw of torch's and of numpy's global generator once seeded with 123, made by their own generators
FIRST_DRAWS_123 = (torch.rand(1, generator=torch.Generator().manual_seed(123)).item(), np.random.RandomState(123).rand())


def seed_global_generators(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def global_draws() -> tuple[float, float]:
    return torch.rand(1).item(), np.random.rand()


@pytest.fixture(scope="module")
def small_rvq(corpus):
    """A barely trained rvq-vae (200 frames), fitted after seeding the global generators with 123;
    with the next draw of each after the fit."""
    seed_global_generators(123)
    tok = Tokenizer.fit(corpus.train[:200], progress=False, quantizer="rvq-vae", codebook_size=16, epochs=1, seed=7)
    return tok, global_draws()


def test_synthetic_fidelity_and_action_recovery(synthetic_tokenizer, corpus):
    tok = synthetic_tokenizer
    tokens = tok.encode(corpus.test)
    assert tokens.shape == (len(corpus.test), 4) and tokens.dtype == np.int64
    cos = cosine_rows(tok.decode(tokens), corpus.test).mean()
    best = action_recovery(tok.code_deformations(), corpus.actions)
    print(f"held-out cosine {cos:.3f}, actions recovered {(best >= 0.9).sum()}/20")
    assert cos >= 0.9
    assert (best >= 0.9).sum() >= 16


def test_tokens_add_up_exactly(synthetic_tokenizer, corpus):
    tok = synthetic_tokenizer
    tokens = tok.encode(corpus.test[:50])
    bias = tok.decode(np.zeros((1, 0), dtype=np.int64))[0]
    summed = bias + sum(tok.decode_code(tokens[:, k]) for k in range(tok.levels))
    np.testing.assert_allclose(tok.decode(tokens), summed, atol=1e-4)
    # coarse to fine: each extra level brings the reconstruction closer on average
    errs = [np.mean((tok.decode_prefix(tokens, k) - corpus.test[:50]) ** 2) for k in range(1, tok.levels + 1)]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs


def test_permuting_frames_permutes_tokens(synthetic_tokenizer, corpus):
    tok = synthetic_tokenizer
    psi = corpus.test[:300]
    perm = np.random.default_rng(5).permutation(len(psi))
    np.testing.assert_array_equal(tok.encode(psi[perm]), tok.encode(psi)[perm])
    # a frame built from two codes' deformations decodes to their sum (linear decoder)
    a, b = 3, 11
    both = tok.decode(np.array([[a, b]]))[0] - tok.decode(np.zeros((1, 0), dtype=np.int64))[0]
    np.testing.assert_allclose(both, tok.decode_code(a) + tok.decode_code(b), atol=1e-4)


def test_save_load_identical_and_seeded_fits(tmp_path, corpus):
    small = corpus.train[:1500]
    seed_global_generators(123)
    a = Tokenizer.fit(small, progress=False, epochs=2, codebook_size=32, seed=3)
    assert global_draws() == FIRST_DRAWS_123  # the fit neither read nor moved them
    b = Tokenizer.fit(small, progress=False, epochs=2, codebook_size=32, seed=3)
    np.testing.assert_array_equal(a.encode(corpus.test), b.encode(corpus.test))
    for k, v in a.model.state_dict().items():
        assert np.array_equal(v.numpy(), b.model.state_dict()[k].numpy()), k
    path = a.save(tmp_path / "m.dfe")
    c = Tokenizer.load(path)
    np.testing.assert_array_equal(a.encode(corpus.test), c.encode(corpus.test))
    assert c.summary.n_train == a.summary.n_train


def test_bad_model_files_give_sentences(tmp_path, corpus):
    a = Tokenizer.fit(corpus.train[:500], progress=False, epochs=1, codebook_size=16)
    with pytest.raises(ModelError, match="expects psi kind 'geometry' with 1404 values.*52"):
        a.encode(np.zeros((3, 52), np.float32))
    junk = tmp_path / "junk.dfe"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ModelError, match="not a dfe model"):
        Tokenizer.load(junk)
    from safetensors.torch import save_file
    import torch

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ModelError, match="not a dfe tokenizer"):
        Tokenizer.load(foreign)
    with pytest.raises(ModelError, match="not found"):
        Tokenizer.load(tmp_path / "missing.dfe")
    good = a.save(tmp_path / "good.dfe")
    cut = tmp_path / "cut.dfe"
    cut.write_bytes(good.read_bytes()[:-500])
    with pytest.raises(ModelError):
        Tokenizer.load(cut)


def test_fit_and_encode_real_tables_cli(extracted, real_model, tmp_path):
    tok = Tokenizer.load(real_model)
    assert tok.summary.n_val > 0 and tok.summary.val_cosine > 0.5
    out = tmp_path / "enc"
    run = run_dfe("encode", str(extracted), "--model", str(real_model),
                          "-o", str(out))
    assert run.returncode == 0, run.stderr
    df = read_table(out / "WolfgangLanger_Pexels.parquet")
    assert token_columns(df) == ["tok_1", "tok_2", "tok_3", "tok_4"]
    assert (df[token_columns(df)] >= 0).all().all() and df["recon_error"].notna().all()
    nf = read_table(out / "no_face.parquet")
    assert (nf["tok_1"] == -1).all()
    # the dictionary's training knobs reach the config from the command line, and a bad one is a sentence
    bad = run_dfe("fit", str(extracted), "-o", str(tmp_path / "x.dfe"), "--codebook-update", "mean")
    assert bad.returncode != 0 and "codebook_update must be 'joint' or 'per-level', not 'mean'" in bad.stderr
    assert "Traceback" not in bad.stderr
    # each row's tokens are that row's own: the table's psi, encoded here in one batch (single-frame
    # batches can differ at fine levels in rare near-ties: float sums depend on the batch size)
    ok = df["success"] == 1
    psi = psi_array(df)
    rows = tok.encode(psi)
    np.testing.assert_array_equal(df.loc[ok, token_columns(df)].to_numpy(), rows)
    np.testing.assert_allclose(df.loc[ok, "recon_error"].to_numpy()[::37],
                               [np.sqrt(np.mean((tok.decode(r[None])[0] - p) ** 2)) for r, p in zip(rows[::37], psi[::37])],
                               rtol=1e-4)
    # a wrong model for the data: clear message, no traceback
    bs = Tokenizer.fit(np.random.default_rng(0).random((200, 52), dtype=np.float32), progress=False,
                       epochs=1, codebook_size=16, psi_kind="blendshapes")
    bs_path = bs.save(tmp_path / "bs.dfe")
    bad = run_dfe("encode", str(extracted / "single_face.parquet"),
                          "--model", str(bs_path), "-o", str(tmp_path / "x"))
    assert "Traceback" not in bad.stderr
    bad2 = run_dfe("encode", str(extracted / "single_face.parquet"),
                           "--model", str(tmp_path / "nothing.dfe"), "-o", str(tmp_path / "x"))
    assert bad2.returncode != 0 and "not found" in bad2.stderr and "Traceback" not in bad2.stderr


def test_fast_encode_matches_residual_vq(small_rvq, corpus):
    """encode() of an rvq-vae model uses a direct residual nearest-code search; it must equal ResidualVQ's own."""
    tok, _ = small_rvq
    assert tok.config.quantizer == "rvq-vae" and tok.gain_levels == 1
    x = torch.from_numpy(tok.standardiser.forward(corpus.test[:500]))
    with torch.no_grad():
        _, expected, _ = tok.model.rvq(tok.model.encoder(x))
    got, expected = tok.encode(corpus.test[:500]), expected.numpy()
    differ = got != expected  # a barely trained codebook has identical (dead) codes: ties may go either way
    cb = tok.model.codebook.detach().numpy()
    assert differ.mean() < 0.02
    np.testing.assert_allclose(cb[got[differ]], cb[expected[differ]], atol=1e-5)


def test_rvq_decodes_any_prefix_of_levels_from_its_codebook(small_rvq, corpus):
    """Decoding goes through ResidualVQ's get_output_from_indices; it must rebuild psi_hat =
    mean + scale (b + W (e_1 + .. + e_k)) from the public codebook for every prefix, none included."""
    tok, _ = small_rvq
    tokens = tok.encode(corpus.test[:50])
    words = tok.model.rvq.codebooks[0].numpy()
    w, b = tok.model.decoder.weight.detach().numpy(), tok.model.decoder.bias.detach().numpy()
    std = tok.standardiser
    for k in range(tok.levels + 1):
        expected = (words[tokens[:, :k]].sum(1) @ w.T + b) * std.scale + std.mean
        np.testing.assert_allclose(tok.decode_prefix(tokens, k), expected, rtol=1e-5, atol=1e-5, err_msg=f"{k} levels")
    np.testing.assert_allclose(tok.decode_code(5), (words[5] @ w.T) * std.scale, rtol=1e-5, atol=1e-6)


def test_rvq_fit_is_seeded_without_touching_global_random_state(small_rvq, corpus):
    tok, draws = small_rvq
    assert draws == FIRST_DRAWS_123  # after the fit, the global generators go on where seeding them left them
    seed_global_generators(999)  # and the fit does not read them: other global seeds, the same model
    again = Tokenizer.fit(corpus.train[:200], progress=False, quantizer="rvq-vae", codebook_size=16, epochs=1, seed=7)
    for k, v in tok.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k
    assert again.summary.epochs_run == tok.summary.epochs_run and again.config == tok.config


def test_fit_takes_a_config_and_knobs_over_it(corpus):
    cfg = TokenizerConfig(codebook_size=256, gain_levels=4, lloyd_iters=3)
    tok = Tokenizer.fit(corpus.train[:200], config=cfg, levels=2, progress=False)
    assert (tok.config.levels, tok.config.lloyd_iters, tok.config.gain_levels) == (2, 3, 4)
    assert tok.config.codebook_size == 4 * (tok.summary.n_train // 8)  # a small corpus: fewer actions
    assert tok.encode(corpus.test[:5]).shape == (5, 2)
    assert cfg == TokenizerConfig(codebook_size=256, gain_levels=4, lloyd_iters=3)  # the caller's config is left as it was
    odd = Tokenizer.fit(corpus.train[:400], codebook_size=130, gain_levels=4, lloyd_iters=2, progress=False)
    assert odd.codebook_size == 128 and len(odd.code_deformations()) == 128  # whole actions: 32 x 4 words
    with pytest.raises(ValueError, match="unknown tokenizer options: codebook"):
        Tokenizer.fit(corpus.train[:200], codebook=16, progress=False)
    with pytest.raises(ValueError, match="codebook_update must be 'joint' or 'per-level', not 'mean'"):
        Tokenizer.fit(corpus.train[:200], codebook_update="mean", progress=False)
    with pytest.raises(ValueError, match="quantizer must be 'shape-gain' or 'rvq-vae', not 'kmeans'"):
        Tokenizer.fit(corpus.train[:200], quantizer="kmeans", progress=False)
    with pytest.raises(ValueError, match="dim=52 was given but the data has 1404"):
        Tokenizer.fit(corpus.train[:200], dim=52, progress=False)


def test_shared_codebook_is_stored_once(tmp_path):
    cfg = TokenizerConfig(psi_kind="blendshapes", dim=52, quantizer="rvq-vae", codebook_size=8, levels=3)
    model = RVQVAE(cfg, make_patches(cfg))
    keys = model.state_dict().keys()
    later_levels = {k for k in keys if k.startswith(("rvq.layers.1.", "rvq.layers.2."))}
    assert later_levels and tied_keys(model) == later_levels  # levels 2 and 3 hold level 1's codebook
    assert tied_keys(ShapeGainModel(TokenizerConfig(dim=52, latent_dim=4))) == set()
    tok = Tokenizer(cfg, model, Standardiser.fit(np.random.default_rng(0).random((20, 52), dtype=np.float32), "blendshapes"))
    back = Tokenizer.load(tok.save(tmp_path / "untrained.dfe"))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "untrained.dfe"), framework="pt") as f:
        stored = {k[len("model."):] for k in f.keys() if k.startswith("model.")}
    assert stored == set(keys) - later_levels
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.model.state_dict()[k]), k
