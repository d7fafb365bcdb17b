"""Runs you can trust: manifest, distinct outputs, resume, crash points, concurrency, checked models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import FACES, VIDEOS, dfe, records
from dfe.table import psi_array, read_table

pytestmark = pytest.mark.skipif(not FACES.is_dir(), reason=f"shared test media not found at {FACES}")
PHOTOS = [FACES / "london" / f"{p:03d}_{e}.jpg" for p in (1, 2, 3) for e in ("neutral", "smiling")]


def assert_tables_equal(a, b):
    assert list(a.columns) == list(b.columns)
    num = [c for c in a.columns if pd.api.types.is_numeric_dtype(a[c])]
    np.testing.assert_allclose(a[num].to_numpy(float), b[num].to_numpy(float), atol=1e-6, equal_nan=True)
    other = [c for c in a.columns if c not in num]
    assert (a[other].astype(str).to_numpy() == b[other].astype(str).to_numpy()).all()


@pytest.fixture(scope="module")
def same_names(tmp_path_factory):
    """a/p.jpg and b/p.jpg: two different people under one file name."""
    root = tmp_path_factory.mktemp("same")
    for folder, src in (("a", PHOTOS[1]), ("b", PHOTOS[3])):
        (root / folder).mkdir()
        shutil.copy(src, root / folder / "p.jpg")
    return root


def test_same_names_in_one_run_and_across_runs(same_names, tmp_path):
    one = tmp_path / "one"
    dfe("extract", same_names / "a", same_names / "b", "-o", one)
    recs = records(one)
    ids = sorted(r["id"] for r in recs.values())
    assert len(ids) == 2 and ids[0] == "p" and ids[1].startswith("p-")
    files = {read_table(one / f"{i}.parquet")["file"].iloc[0] for i in ids}
    assert files == {str(same_names / "a" / "p.jpg"), str(same_names / "b" / "p.jpg")}
    # across runs, and with --overwrite: nothing replaced, the report forgets nothing
    two = tmp_path / "two"
    dfe("extract", same_names / "a", "-o", two)
    dfe("extract", same_names / "b", "-o", two, "--overwrite")
    dfe("extract", same_names / "a", "-o", two, "--overwrite")
    assert sorted(p.name for p in two.glob("*.parquet")) == sorted(f"{i}.parquet" for i in ids)
    report = json.loads((two / "report.json").read_text())["results"]
    assert len(report) == 2 and all(r["status"] == "ok" for r in report)
    # the same id for the same input in every run (stable)
    assert {r["input"]: r["id"] for r in records(two).values()} == {r["input"]: r["id"] for r in recs.values()}


def test_changed_input_is_redone_and_status(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for p in PHOTOS[:2]:
        shutil.copy(p, src / p.name)
    (src / "broken.jpg").write_text("not an image")
    out = tmp_path / "out"
    assert dfe("extract", src, "-o", out, check=False).returncode == 1
    st = dfe("status", out, check=False)
    assert st.returncode == 1 and "2 done, 1 failed" in st.stdout and "broken.jpg" in st.stdout
    before = read_table(out / "001_smiling.parquet")
    shutil.copy(PHOTOS[5], src / "001_smiling.jpg")  # another person's photo at the same path
    shutil.copy(PHOTOS[2], src / "broken.jpg")  # the failure is mended
    assert "1 stale" in dfe("status", out, check=False).stdout
    dfe("extract", src, "-o", out, "--retry-failed")
    recs = {os.path.basename(k): v for k, v in records(out).items()}
    assert recs["001_smiling.jpg"]["runs"] == 2 and recs["001_neutral.jpg"]["runs"] == 1
    assert recs["broken.jpg"]["status"] == "ok"
    after = read_table(out / "001_smiling.parquet")
    assert not np.allclose(psi_array(before), psi_array(after))
    assert dfe("status", out).stdout.startswith("3 done, 0 failed, 0 stale")


@pytest.mark.parametrize("crash", ["after:2", "write"])
def test_crash_and_resume_equals_uninterrupted_run(tmp_path, crash):
    clean = tmp_path / "clean"
    dfe("extract", *PHOTOS[:4], "-o", clean)
    out = tmp_path / "out"
    run = dfe("extract", *PHOTOS[:4], "-o", out, "--workers", "1", env={"DFE_CRASH_AT": crash}, check=False)
    assert run.returncode == 99
    finished = {k for k, v in records(out).items() if v["status"] == "ok"}
    assert len(finished) == (2 if crash == "after:2" else 0)
    visible = [p for p in out.glob("*.parquet") if not p.name.startswith(".")]
    assert len(visible) == len(finished)  # a crash mid-write leaves no table (only a hidden partial file)
    dfe("extract", *PHOTOS[:4], "-o", out)
    recs = records(out)
    assert all(recs[k]["runs"] == 1 for k in finished)  # finished inputs were not redone
    assert not list(out.glob(".*partial*"))
    for p in PHOTOS[:4]:
        assert_tables_equal(read_table(out / f"{p.stem}.parquet"), read_table(clean / f"{p.stem}.parquet"))


def test_two_concurrent_runs_lose_nothing(tmp_path):
    out = tmp_path / "out"
    cmds = [[*PHOTOS[:4]], [*PHOTOS[2:]]]
    procs = [subprocess.Popen([sys.executable, "-m", "dfe.cli", "extract", *map(str, c), "-o", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in cmds]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:]
    recs = records(out)
    assert len(recs) == 6 and all(r["status"] == "ok" for r in recs.values())
    assert sorted(p.name for p in out.glob("*.parquet")) == sorted(f"{p.stem}.parquet" for p in PHOTOS)
    assert len(json.loads((out / "report.json").read_text())["results"]) == 6
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*partial*"))


def test_damaged_video_keeps_decoding_past_bad_frames(tmp_path):
    data = bytearray((VIDEOS / "single_face.mp4").read_bytes())
    a, b = int(len(data) * 0.40), int(len(data) * 0.45)
    data[a:b] = bytes(b - a)  # zeros over 5% in the middle
    (tmp_path / "damaged.mp4").write_bytes(bytes(data))
    dfe("extract", tmp_path / "damaged.mp4", "-o", tmp_path / "out")
    df = read_table(tmp_path / "out" / "damaged.parquet")
    assert len(df) == 72 and df["frame"].tolist() == list(range(72))
    bad = df["reason"] == "undecodable frame"
    assert 1 <= bad.sum() <= 8 and (df.loc[bad, "success"] == 0).all() and (df.loc[~bad, "success"] == 1).all()
    assert records(tmp_path / "out")[str(tmp_path / "damaged.mp4")]["status"] == "ok"


def test_encode_outputs_and_checked_models(tmp_path, same_names):
    tables = tmp_path / "tables"
    dfe("extract", same_names / "a", "-o", tables / "a")
    dfe("extract", same_names / "b", "-o", tables / "b")
    from dfe.runs.demo import starter_model_path

    enc = tmp_path / "enc"
    run = dfe("encode", tables, "--model", starter_model_path(), "-o", enc)
    assert "2 encoded" in run.stdout and len(list(enc.glob("*.parquet"))) == 2
    # a model with one byte changed inside a tensor is refused, and --in-place leaves tables alone
    raw = bytearray(starter_model_path().read_bytes())
    raw[len(raw) // 2] ^= 0x5A
    (tmp_path / "bad.dfe").write_bytes(bytes(raw))
    before = (tables / "a" / "p.parquet").read_bytes()
    bad = dfe("encode", tables, "--model", tmp_path / "bad.dfe", "--in-place", check=False)
    assert bad.returncode == 2 and "damaged" in bad.stderr and "bad.dfe" in bad.stderr and "Traceback" not in bad.stderr
    assert (tables / "a" / "p.parquet").read_bytes() == before
    # fit refuses a folder or an unwritable path before any training
    for target in (tmp_path, "/proc/dfe-model.dfe"):
        fit = dfe("fit", tables, "-o", target, check=False)
        assert fit.returncode == 2 and str(target) in fit.stderr and "Traceback" not in fit.stderr
        assert "epoch" not in fit.stderr
    ext = dfe("extract", PHOTOS[0], "-o", tmp_path / "bad.dfe", check=False)  # -o is a file
    assert ext.returncode == 2 and "is a file" in ext.stderr and "Traceback" not in ext.stderr
    assert dfe("--version").stdout.startswith("dfe ")


def test_dfe_01_output_folder_is_read(tmp_path):
    """A folder written by dfe 0.1 (report.json, no manifest): its tables are kept, not redone."""
    out = tmp_path / "old"
    dfe("extract", PHOTOS[0], "-o", out)
    (out / "manifest.sqlite").unlink()
    for extra in out.glob("manifest.sqlite-*"):
        extra.unlink()
    table = out / f"{PHOTOS[0].stem}.parquet"
    (out / "report.json").write_text(json.dumps({"results": [
        {"input": str(PHOTOS[0]), "status": "ok", "output": str(table), "frames": 1, "faces": 1, "seconds": 0.1,
         "error": None}]}))
    mtime = table.stat().st_mtime_ns
    run = dfe("extract", PHOTOS[0], PHOTOS[1], "-o", out)
    assert "1 ok, 1 up to date" in run.stdout and table.stat().st_mtime_ns == mtime


def test_one_error_handler_and_shared_options(tmp_path):
    """Every command's error on purpose is one line and exit 2 (a DfeError, or a missing file
    from a layer below); an option that several commands share reads the same in each."""
    run = dfe("status", tmp_path, check=False)
    assert run.returncode == 2 and run.stderr == f"error: {tmp_path} has no manifest.sqlite: not a dfe output folder\n"
    run = dfe("openface", tmp_path, "-o", tmp_path / "of", check=False)
    assert run.returncode == 2 and run.stderr == f"error: no tables (.parquet or .csv) found in: {tmp_path}\n"
    from typer.main import get_command

    from dfe.cli import app

    commands = get_command(app).commands
    for option in ("--workers", "--engine", "--overwrite", "--progress", "--group", "--model"):
        helps = {name: p.help for name, c in commands.items() for p in c.params if option in p.opts}
        assert len(helps) >= 2 and len(set(helps.values())) == 1, (option, helps)
