"""Out of the box: `dfe demo` on the bundled public-domain photo; the wheel carries its data."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pandas as pd
import pytest

from dfe.runs.demo import load_starter

from conftest import run_dfe


def test_starter_model_loads_and_records_provenance():
    tok = load_starter()
    assert tok.config.psi_kind == "geometry" and tok.summary.n_train > 100
    assert "London Set" in tok.summary.data["credits"]["london"]


def test_demo_runs_on_the_astronaut(tmp_path):
    run = run_dfe("demo", "-o", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "decomposition.png").stat().st_size > 10_000
    assert (tmp_path / "atlas" / "index.html").stat().st_size > 1_000
    df = pd.read_parquet(tmp_path / "tables" / "astronaut.parquet")
    assert df["success"].iloc[0] == 1
    assert (df[["tok_1", "tok_2", "tok_3", "tok_4"]] >= 0).all().all()
    assert "decomposition:" in run.stdout and "atlas:" in run.stdout


def test_demo_on_a_file_without_a_face(tmp_path):
    from conftest import VIDEOS

    run = run_dfe("demo", str(VIDEOS / "no_face.mp4"), "-o", str(tmp_path))
    assert run.returncode == 2 and "no face" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.slow
def test_wheel_contains_model_and_code(tmp_path):
    from pathlib import Path

    import shutil

    root = Path(__file__).resolve().parents[1]
    # build from a copy so the checkout gets no build/ folder
    src = tmp_path / "src"
    shutil.copytree(root, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                          str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("dfe-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "dfe/data/starter.dfe" in names and "dfe/data/face_model.npz" in names
    assert "dfe/cli.py" in names and "dfe/table.py" in names
    # every module of every layer folder ships (a folder without __init__.py would be left out)
    modules = {str(p.relative_to(root / "src")) for p in (root / "src" / "dfe").rglob("*.py")}
    assert modules - set(names) == set() and "dfe/extraction/mesh.py" in names
