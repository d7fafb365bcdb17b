"""Evaluation: fidelity vs baselines on the synthetic corpus, the full report on real tables."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from dfe.eval import distinct_per_1000, fidelity, level_curve, residual_quantize


def test_synthetic_fidelity_beats_random_codebook_and_rises_with_levels(synthetic_tokenizer, corpus):
    tok = synthetic_tokenizer
    fid = fidelity(tok, corpus.train[:5000], corpus.test).set_index("encoding")
    dfe_cos = fid.loc["dfe tokens (K=4)", "cosine_mean"]
    rand_cos = fid.loc["random codebook RVQ (K=4)", "cosine_mean"]
    print(fid[["bits", "cosine_mean", "mse_mean"]])
    assert dfe_cos > rand_cos + 0.2
    curve = level_curve(tok, corpus.test)
    assert all(b > a for a, b in zip(curve, curve[1:])), curve


def test_helpers():
    assert distinct_per_1000(np.array([[1, 2], [1, 2], [3, 4], [5, 6]])) == 750
    cb = np.eye(3)
    np.testing.assert_allclose(residual_quantize(np.array([[1.0, 1.0, 0.0]]), cb, 2), [[1.0, 1.0, 0.0]])


def test_evaluate_report_on_real_tables(extracted, real_model, tmp_path):
    out = tmp_path / "report"
    run = subprocess.run([sys.executable, "-m", "dfe.cli", "evaluate", str(extracted), "--model", str(real_model),
                          "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text())
    names = [r["encoding"] for r in report["fidelity"]]
    assert any("blendshapes" in n for n in names) and any("PCA" in n for n in names) and any("k-means" in n for n in names)
    assert report["diversity"]["distinct_token_combinations_per_1000"] > 0
    assert len(report["retrieval"]) == 2
    md = (out / "report.md").read_text()
    assert "Fidelity" in md and "Diversity" in md and "Retrieval" in md
    assert (out / "fidelity_levels.png").stat().st_size > 0 and (out / "usage.png").stat().st_size > 0
    print(md)
