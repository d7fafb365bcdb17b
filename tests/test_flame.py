"""FLAME expression input (EMOCA/DECA/SMIRK naming) -> table -> tokenizer of psi kind flame."""

from __future__ import annotations

import numpy as np

from dfe.table import read_table
from dfe.tokens.tables import fit_tables

from conftest import run_dfe


def test_import_flame_folder_and_fit(tmp_path):
    rng = np.random.default_rng(0)
    frames = tmp_path / "emoca"
    frames.mkdir()
    for i in range(60):  # DECA/EMOCA style: expcode (50) + posecode (global 3 + jaw 3)
        np.savez(frames / f"{i:04d}.npz", expcode=rng.normal(size=50), posecode=rng.normal(size=6))
    out = tmp_path / "clip.parquet"
    run = run_dfe("import-flame", str(frames), "-o", str(out))
    assert run.returncode == 0, run.stderr
    df = read_table(out)
    assert len(df) == 60 and [c for c in df.columns if c.startswith("flame_")][-1] == "flame_52"
    saved = np.load(frames / "0003.npz")
    np.testing.assert_allclose(df.loc[3, ["flame_50", "flame_51", "flame_52"]].to_numpy(float), saved["posecode"][3:], rtol=1e-6)
    np.testing.assert_allclose(df.loc[3, [f"flame_{i}" for i in range(50)]].to_numpy(float), saved["expcode"], rtol=1e-6)
    smirk = tmp_path / "smirk.npz"  # SMIRK style: one file, all frames
    np.savez(smirk, expression_params=rng.normal(size=(40, 50)), jaw_params=rng.normal(size=(40, 3)))
    assert run_dfe("import-flame", str(smirk), "-o", str(tmp_path / "b.parquet")).returncode == 0
    b = read_table(tmp_path / "b.parquet")
    saved = np.load(smirk)
    np.testing.assert_allclose(b[[f"flame_{i}" for i in range(50)]].to_numpy(float), saved["expression_params"], rtol=1e-6)
    np.testing.assert_allclose(b[["flame_50", "flame_51", "flame_52"]].to_numpy(float), saved["jaw_params"], rtol=1e-6)
    tok = fit_tables([out, tmp_path / "b.parquet"], psi_kind="flame", progress=False, epochs=2, codebook_size=16)
    assert tok.config.dim == 53 and tok.encode(np.zeros((2, 53), np.float32)).shape == (2, 4)
    bad = run_dfe("import-flame", str(tmp_path / "nothing"), "-o", str(out))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
