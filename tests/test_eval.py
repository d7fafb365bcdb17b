"""Evaluation: fidelity vs baselines on the synthetic corpus, the full report on real tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dfe.analysis import reports
from dfe.analysis.evaluate import distinct_per_1000, fidelity, level_curve, residual_quantize

from conftest import run_dfe


def test_synthetic_fidelity_beats_random_codebook_and_rises_with_levels(synthetic_tokenizer, corpus):
    tok = synthetic_tokenizer
    fid = fidelity(tok, corpus.train[:600], corpus.test[:300]).set_index("encoding")
    dfe_cos = fid.loc["dfe tokens (K=4)", "cosine_mean"]
    rand_cos = fid.loc["random codebook RVQ (K=4)", "cosine_mean"]
    print(fid[["bits", "cosine_mean", "mse_mean", "train_cosine_mean"]])
    assert dfe_cos > rand_cos + 0.2
    # the equal-bit residual k-means row is there, with its training cosine at least its held-out one
    rkm = fid.loc[f"residual k-means 4 x {tok.codebook_size}"]
    assert rkm["bits"] == fid.loc["dfe tokens (K=4)", "bits"] and rkm["train_cosine_mean"] >= rkm["cosine_mean"] - 0.01
    curve = level_curve(tok, corpus.test)
    assert all(b > a for a, b in zip(curve, curve[1:])), curve


def test_helpers():
    assert distinct_per_1000(np.array([[1, 2], [1, 2], [3, 4], [5, 6]])) == 750
    cb = np.eye(3)
    np.testing.assert_allclose(residual_quantize(np.array([[1.0, 1.0, 0.0]]), cb, 2), [[1.0, 1.0, 0.0]])
    # by hand: (2.2, 0.9, 0.1) is nearest e1 (|c|^2 - 2 r.c = -3.4 vs -0.8, 0.8), and so is the
    # residual (1.2, 0.9, 0.1) (-1.4 vs -0.8): two levels give (2, 0, 0), not the input
    np.testing.assert_allclose(residual_quantize(np.array([[2.2, 0.9, 0.1]]), cb, 2), [[2.0, 0.0, 0.0]])
    np.testing.assert_allclose(residual_quantize(np.array([[2.2, 0.9, 0.1]]), cb, 3), [[2.0, 1.0, 0.0]])


def test_evaluate_report_on_real_tables(extracted, real_model, tmp_path):
    """The README tour: `dfe fit tables/` then `dfe evaluate tables/` scores the fit's own held-out
    videos in one pass (no refit), against baselines fitted on exactly the videos it trained on."""
    from dfe.table import load_tables, psi_array
    from dfe.tokens.tokenizer import Tokenizer

    tok = Tokenizer.load(real_model)
    trained = set(tok.summary.data["train_groups"])
    out = tmp_path / "report"
    run = run_dfe("evaluate", str(extracted), "--model", str(real_model), "-o", str(out), "--no-refit")
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["refit"] is None and report["overlap_groups"] == [] and not (out / "refit_model.dfe").exists()
    assert set(report["split"]["test_videos"]) == set(tok.summary.data["val_groups"])  # every table was in the fit
    assert "never trained on" in report["split"]["by"]
    assert report["split"]["train_frames"] == int(load_tables([extracted]).query("success == 1")["video"].isin(trained).sum())
    names = [r["encoding"] for r in report["fidelity"]]
    assert any("blendshapes" in n for n in names) and any("PCA" in n for n in names) and any("k-means" in n for n in names)
    assert any(n.startswith("residual k-means") for n in names)
    assert report["diversity"]["distinct_token_combinations_per_1000"] > 0
    assert len(report["retrieval"]) == 2
    md = (out / "report.md").read_text()
    assert "Fidelity" in md and "Diversity" in md and "Retrieval" in md
    assert (out / "fidelity_levels.png").stat().st_size > 0 and (out / "usage.png").stat().st_size > 0
    # the report says the bundled face model may have seen the tested people (it names its sets and videos)
    assert "Face model" in md and any("London" in src for src in report["face_model"]["sources"])
    assert set(report["face_model"]["inputs_named_in_it"]) == {"WolfgangLanger_Pexels", "single_face"} & set(report["split"]["test_videos"])
    print(md)
    # the report's dfe fidelity is that of each held-out frame's own tokens: recomputed here frame by
    # frame (encode one frame, decode it, cosine to its psi) over the same held-out videos
    df = load_tables([extracted])
    df = df[df["success"] == 1].reset_index(drop=True)
    held = df["video"].astype(str).isin(report["split"]["test_videos"]).to_numpy()
    psi = psi_array(df[held])
    assert len(psi) == report["split"]["test_frames"]
    cos = []
    for row in psi:
        if np.linalg.norm(row) > 1e-6:
            rec = tok.decode(tok.encode(row[None]))[0]
            cos.append(rec @ row / np.linalg.norm(rec) / np.linalg.norm(row))
    dfe_row = next(r for r in report["fidelity"] if r["encoding"].startswith("dfe tokens (K="))
    assert dfe_row["cosine_mean"] == pytest.approx(np.mean(cos), abs=1e-4)
    curve = report["level_curve_cosine"]  # all K levels rebuild held-out psi best
    assert curve[-1] == max(curve) and curve[-1] > curve[0] + 0.02, curve
    tokens_ret = next(r for r in report["retrieval"] if r["retrieval"].startswith("tokens"))
    assert tokens_ret["psi_cosine_mean"] > 0.6


def test_evaluate_refits_an_old_model_and_says_how_long_first(extracted, real_model, tmp_path):
    """A model that does not record what it trained on (dfe 0.2) is not scored: a tokenizer of its
    configuration is fitted on a seeded split, announced with its expected time, and saved."""
    from dfe.tokens.tokenizer import Tokenizer

    tok = Tokenizer.load(real_model)
    del tok.summary.data["train_groups"], tok.summary.data["val_groups"]
    old = tmp_path / "old.dfe"
    tok.save(old)
    refused = run_dfe("evaluate", extracted, "--model", old, "-o", tmp_path / "refused", "--no-refit")
    assert refused.returncode == 2 and "does not record" in refused.stderr
    out = tmp_path / "report"
    run = run_dfe("evaluate", extracted, "--model", old, "-o", out)
    assert run.returncode == 0, run.stderr
    assert "fitting a tokenizer of its configuration" in run.stderr and "(about " in run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["refit"]["train_frames"] == report["split"]["train_frames"] and report["overlap_groups"] is None
    assert "was not scored" in (out / "report.md").read_text()
    assert not set(report["split"]["test_videos"]) & Tokenizer.load(out / "refit_model.dfe").seen_groups


def test_metrics_by_hand():
    from dfe.analysis.evaluate import _score, diversity, pca_bits, retrieval

    psi = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    recon = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    s = _score(recon, psi)
    # cosine over the moving frames only: 1/sqrt(2) and 1; MSE over all: 0.5, 0.5, 1.0
    assert s["cosine_mean"] == pytest.approx((1 / np.sqrt(2) + 1) / 2) and s["cosine_p10"] < s["cosine_median"]
    assert s["mse_mean"] == pytest.approx(2 / 3) and s["mse_median"] == pytest.approx(0.5)
    # PCA with all components and many bits reproduces the data; with 1 bit it cannot
    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 3)) @ np.diag([3, 2, 1])
    test = train[:20] * 0.5
    assert np.abs(pca_bits(train, test, 3, 12) - test).max() < 0.01
    assert np.abs(pca_bits(train, test, 3, 1) - test).max() > 0.3
    tokens = np.array([[1, 2], [1, 2], [3, 4], [1, 5]])
    blend = np.zeros((4, 52))
    blend[:, 10] = [0.9, 0.9, 0.1, 0.6]  # binarised at 0.5: {10}, {10}, {}, {10}
    d = diversity(tokens, blend, codebook_size=8)
    assert d["frames"] == 4 and d["distinct_token_combinations_per_1000"] == 750
    assert d["distinct_binarised_blendshape_sets_per_1000"] == 500
    assert d["codes_never_used_share"] == pytest.approx(3 / 8)  # codes 0, 6, 7 never used
    # retrieval: the frames sharing tokens with a query have its psi direction
    psi4 = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.9, 0.0]])
    ret = retrieval(tokens, blend, psi4, k=1, max_queries=4).set_index("retrieval")
    assert ret.loc["tokens (overlap)", "queries"] == 4 and ret.loc["tokens (overlap)", "psi_cosine_mean"] > 0.4


def test_retrieval_exact_values():
    """Token overlap finds the frame with the same psi direction (cosine 1); blendshape distance,
    built to mislead here, finds the orthogonal one (cosine 0)."""
    from dfe.analysis.evaluate import retrieval

    tokens = np.array([[1, 2], [1, 2], [3, 4], [3, 5]])
    psi = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    blend = np.zeros((4, 52))
    blend[:, 5] = [0.0, 0.9, 0.05, 0.95]
    labels = np.array(["a", "a", "b", "b"])
    ret = retrieval(tokens, blend, psi, k=1, labels=labels, max_queries=4).set_index("retrieval")
    assert ret.loc["tokens (overlap)", "psi_cosine_mean"] == pytest.approx(1.0)
    assert ret.loc["blendshapes (euclidean)", "psi_cosine_mean"] == pytest.approx(0.0)
    assert ret.loc["tokens (overlap)", "precision_at_k"] == 1.0 and ret.loc["blendshapes (euclidean)", "precision_at_k"] == 0.0


def test_level_curve_pca_levels_and_edges_by_hand():
    from types import SimpleNamespace

    from dfe.analysis.evaluate import diversity, level_curve, pca_bits

    psi = np.array([[1.0, 1.0], [0.0, 2.0], [0.0, 0.0]])  # the zero row (a neutral photo) is left out
    prefix = {1: np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), 2: psi + [[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]]}
    tok = SimpleNamespace(levels=2, decode_prefix=lambda tokens, k: prefix[k], encode=None)
    curve = level_curve(tok, psi, tokens=np.zeros((3, 2), int))
    assert curve == pytest.approx([(1 / np.sqrt(2) + 1) / 2, 1.0])
    assert distinct_per_1000(np.zeros((0, 2))) == 0.0
    rng = np.random.default_rng(1)
    train = rng.normal(size=(100, 1))
    out = pca_bits(train, train[:30], 1, 1)  # 1 bit: every value is one of 2 levels
    assert len(np.unique(np.round(out, 6))) == 2
    assert len(np.unique(np.round(pca_bits(train, train, 1, 2), 6))) == 4
    blend = np.zeros((2, 52))
    blend[0, 3] = 0.5  # exactly the threshold: not active (> 0.5)
    assert diversity(np.array([[0], [0]]), blend, 4)["distinct_binarised_blendshape_sets_per_1000"] == 500


def test_quantize_and_score_edges_by_hand():
    from dfe.analysis.evaluate import _score, diversity, residual_quantize

    # a non-unit codebook: |c|^2 - 2 r.c for r = (1.9, 0): (4 - 7.6, 1 - 0) -> code 0 = (2, 0)
    cb = np.array([[2.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(residual_quantize(np.array([[1.9, 0.0]]), cb, 1), [[2.0, 0.0]])
    # for r = (0.9, 0.9): (4 - 3.6, 1 - 1.8) -> code 1 = (0, 1), not the longer code 0
    np.testing.assert_allclose(residual_quantize(np.array([[0.9, 0.9]]), cb, 1), [[0.0, 1.0]])
    cos = _score(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]))
    assert cos["cosine_p10"] == pytest.approx(np.percentile([1.0, 1 / np.sqrt(2), 0.0], 10))
    assert _score(np.ones((2, 2)), np.zeros((2, 2)))["cosine_mean"] == 0.0  # no moving frame
    blend = np.zeros((2, 52))
    blend[0, 0] = 0.9  # _neutral is not an expression: left out of the binarised sets
    assert diversity(np.array([[0], [0]]), blend, 4)["distinct_binarised_blendshape_sets_per_1000"] == 500


def test_markdown_table_by_hand():
    df = pd.DataFrame({"encoding": ["dfe", "pca"], "bits": [28, 7], "cosine": [0.95649, 0.5]})
    assert reports.markdown_table(df) == ("| encoding | bits | cosine |\n|---|---|---|\n"
                                          "| dfe | 28 | 0.956 |\n| pca | 7 | 0.500 |")
    numbers = pd.DataFrame({"k": [5], "mse": np.array([0.25], dtype=np.float32)})  # no text column, float32
    assert reports.markdown_table(numbers) == "| k | mse |\n|---|---|\n| 5 | 0.250 |"  # 5 stays an integer
    mixed = pd.DataFrame({"ci": pd.Series([np.float32(0.25), None], dtype=object)})  # numpy floats among others
    assert reports.markdown_table(mixed) == "| ci |\n|---|\n| 0.250 |\n| None |"


def test_bar_chart_draws_scores_errors_and_chance(tmp_path, monkeypatch):
    drawn = {}

    def keep_figure(fig, path, **savefig):  # in place of writing it: the figure is what is checked
        drawn["fig"] = fig
        return path

    monkeypatch.setattr(reports, "save_figure", keep_figure)
    reports.bar_chart(tmp_path / "bars.png", ["dfe", "blendshapes"], [0.8, 0.3], errors=([0.1, 0.4], [0.1, 0.1]),
                      chance=0.5, xlabel="macro_f1")
    ax = drawn["fig"].axes[0]
    bars = sorted(ax.patches, key=lambda b: b.get_y())  # top of the chart first (the axis is inverted)
    assert [round(b.get_width(), 6) for b in bars] == [0.8, 0.3]  # first label on top
    assert [t.get_text() for t in ax.get_yticklabels()] == ["dfe", "blendshapes"] and ax.yaxis_inverted()
    assert ax.get_xlim() == pytest.approx((0.3 - 0.4 - 0.05, 1.0))  # below 0: the lowest error bar, less 0.05
    assert [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"] == [0.5]
    assert ax.get_legend().get_texts()[0].get_text() == "chance (0.50)"
    reports.agg_pyplot().close(drawn["fig"])

