"""Every core and a Ray cluster: parallel runs equal serial ones, kills resume, compact tables read
old ones, sampled videos, fitting from a sample, devices."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pandas as pd
import pytest

from conftest import FACES, VIDEOS, dfe
from dfe.table import LM_STEP, PSI_STEP, read_arrays, read_table, write_table

INPUTS = [VIDEOS / "single_face.mp4"] + [FACES / "london" / f"{p:03d}_{e}.jpg" for p in (4, 5) for e in ("neutral", "smiling")]


def tables_of(folder):
    return {p.name: read_table(p) for p in sorted(folder.glob("*.parquet")) if not p.name.startswith(".")}


def assert_same_tables(a: dict, b: dict):
    assert sorted(a) == sorted(b) and a
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    dfe("extract", *INPUTS, "-o", out, "--workers", "1")
    return out


def test_two_workers_equal_one(serial, tmp_path):
    out = tmp_path / "pool"
    run = dfe("extract", *INPUTS, "-o", out, "--workers", "2")
    assert "5 ok" in run.stdout
    assert_same_tables(tables_of(out), tables_of(serial))
    assert "frames" in run.stderr  # one progress display over frames (plain lines when not a terminal)


def test_kill_during_a_parallel_run_resumes(serial, tmp_path):
    out = tmp_path / "killed"
    run = dfe("extract", *INPUTS, "-o", out, "--workers", "2", env={"DFE_CRASH_AT": "after:2"}, check=False)
    assert run.returncode == 99
    db = sqlite3.connect(out / "manifest.sqlite")
    done = {r[0] for r in db.execute("SELECT input FROM records WHERE status = 'ok'")}
    db.close()
    assert len(done) == 2 and len(tables_of(out)) == 2  # only committed tables are visible
    again = dfe("extract", *INPUTS, "-o", out, "--workers", "2")
    assert "3 ok, 2 up to date" in again.stdout
    assert_same_tables(tables_of(out), tables_of(serial))


@pytest.mark.slow
def test_ray_equals_the_process_pool(serial, tmp_path):
    ray = pytest.importorskip("ray")
    from dfe.extraction.pipeline import ExtractOptions
    from dfe.runs.extract import extract

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = extract(INPUTS, tmp_path / "ray", ExtractOptions(progress=False), engine="ray")
        assert report.ok
        encoded = tmp_path / "enc"
        from dfe.runs.encode import encode_corpus
        from dfe.tokens.tokenizer import Tokenizer
        import dfe as pkg

        tok = Tokenizer.load(os.path.join(os.path.dirname(pkg.__file__), "data", "starter.dfe"))
        outcomes = encode_corpus([tmp_path / "ray"], tok, encoded, engine="ray", progress=False)
        assert all(o.status == "ok" for o in outcomes)
    finally:
        ray.shutdown()
    assert_same_tables(tables_of(tmp_path / "ray"), tables_of(serial))
    assert all("tok_1" in t.columns for t in tables_of(encoded).values())


def test_compact_tables_read_old_ones(serial, tmp_path):
    new = read_table(serial / "single_face.parquet")
    old_path = tmp_path / "old.parquet"
    new.to_parquet(old_path, index=False)  # dfe 0.2's layout: 2,991 wide float64 columns
    old = read_table(old_path)
    pd.testing.assert_frame_equal(old, new, check_dtype=False)
    again = tmp_path / "again.parquet"
    write_table(old, again)  # an old table rewritten: the compact layout, same values
    pd.testing.assert_frame_equal(read_table(again), new)
    assert os.path.getsize(again) < 0.5 * os.path.getsize(old_path)
    fast = read_arrays(again, ["psi", "lm"], successful_only=True)
    ok = new["success"] == 1
    assert fast["psi"].shape == (ok.sum(), 1404) and fast["lm"].shape == (ok.sum(), 478 * 3)
    assert sum(c.startswith("lm_") for c in new.columns) == 478 * 3  # every table keeps its landmarks
    np.testing.assert_array_equal(fast["psi"], new.loc[ok, [f"psi_{i}" for i in range(1404)]].to_numpy(np.float32))
    np.testing.assert_array_equal(read_arrays(old_path, ["psi"], successful_only=True)["psi"], fast["psi"])
    # values are stored to 10 micrometres (psi) and 1e-4 image units (landmarks), no coarser
    psi = fast["psi"][np.isfinite(fast["psi"])]
    assert np.allclose(psi / PSI_STEP, np.round(psi / PSI_STEP), atol=1e-2)
    lm = fast["lm"][np.isfinite(fast["lm"])]
    assert np.allclose(lm / LM_STEP, np.round(lm / LM_STEP), atol=1e-2)


def test_fps_start_end(tmp_path):
    from dfe.extraction.pipeline import ExtractOptions, extract_file

    df = extract_file(VIDEOS / "WolfgangLanger_Pexels.mp4", ExtractOptions(fps=5, start=2.0, end=6.0, progress=False))
    t = df["timestamp"].to_numpy()
    assert t.min() >= 2.0 - 0.05 and t.max() < 6.0 and 19 <= len(df) <= 21  # 4 s at 5 frames/s
    assert np.allclose(np.diff(t), 0.2, atol=0.05)
    lean = extract_file(VIDEOS / "WolfgangLanger_Pexels.mp4", ExtractOptions(landmarks=False, progress=False, end=5.0))
    assert not any(c.startswith("lm_") for c in lean.columns) and lean["psi_0"].notna().any()
    write_table(lean, tmp_path / "lean.parquet")
    assert os.path.getsize(tmp_path / "lean.parquet") / len(lean) < 4000  # bytes per frame without landmarks
    run = dfe("extract", VIDEOS / "single_face.mp4", "-o", tmp_path, "--fps", "0", check=False)
    assert run.returncode == 2 and "--fps must be positive" in run.stderr


def test_fit_from_a_stratified_sample(serial):
    from dfe.tokens.tables import fit_tables, sample_sizes

    assert sample_sizes([100, 50, 10], 80) == [50, 25, 5]
    assert sample_sizes([3, 3, 3], 4) == [2, 1, 1] and sum(sample_sizes([7, 5, 1], 6)) == 6
    assert sample_sizes([10, 20], None) == [10, 20] and sample_sizes([10, 20], 100) == [10, 20]
    tok = fit_tables([serial], progress=False, max_frames=40, codebook_size=8, levels=2, epochs=2)
    assert tok.summary.data["frames_used"] == 40 and tok.summary.data["frames"] > 40
    assert tok.summary.n_train + tok.summary.n_val == 40


def test_devices():
    import torch

    from dfe.tokens.tokenizer import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="must be auto, cpu or cuda"):
        resolve_device("tpu")
