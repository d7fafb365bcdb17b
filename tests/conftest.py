"""Shared fixtures: real media from ../shared, extracted once per test session."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n: one worker per core, so one thread per worker
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

SHARED = Path(os.environ.get("DFE_SHARED", Path(__file__).resolve().parents[2] / "shared")).resolve()
FACES = SHARED / "faces"
VIDEOS = SHARED / "videos"


def _reads_shared(item) -> bool:
    """A test needs ../shared if it asks for a fixture built from it or names its folders."""
    import inspect

    if {"shared", "extracted", "face_data", "real_model"} & set(item.fixturenames):
        return True
    try:
        source = inspect.getsource(item.function)
    except (OSError, TypeError):
        return False
    return any(name in source for name in ("FACES", "VIDEOS", "SHARED"))


def pytest_collection_modifyitems(config, items):
    if not SHARED.is_dir():
        skip = pytest.mark.skip(reason=f"shared test media not found at {SHARED}")
        for item in items:
            if _reads_shared(item):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def shared() -> Path:
    return SHARED


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The folder ``build(folder)`` fills, made once per test run: under pytest-xdist the first
    worker to ask builds it while the others wait on a file lock, then all read the same files."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # shared by every worker of this run
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            folder.mkdir(exist_ok=True)
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def extracted(tmp_path_factory) -> Path:
    """Tables of every shared video and London photo (neutral photos as references)."""
    from dfe.extraction.pipeline import ExtractOptions
    from dfe.runs.extract import extract

    def build(out: Path) -> None:
        report = extract([VIDEOS, FACES / "london"], out, ExtractOptions(neutral="auto", progress=False))
        assert report.ok, [r.error for r in report.failed]

    return built_once(tmp_path_factory, "extracted", build)


@pytest.fixture(scope="session")
def corpus():
    from dfe.extraction.synthetic import action_corpus

    return action_corpus()


@pytest.fixture(scope="session")
def synthetic_tokenizer(corpus, tmp_path_factory):
    """The default tokenizer fitted on the 20-action synthetic corpus (about 20 s on 2 cores)."""
    from dfe.tokens.tokenizer import Tokenizer

    folder = built_once(tmp_path_factory, "synthetic_tokenizer",
                        lambda out: Tokenizer.fit(corpus.train, progress=False).save(out / "model.dfe"))
    return Tokenizer.load(folder / "model.dfe")


@pytest.fixture(scope="session")
def real_model(extracted, tmp_path_factory):
    """A small, short (5-epoch) tokenizer fitted on the tables extracted from ../shared, saved to disk."""
    from dfe.tokens.tables import fit_tables

    folder = built_once(tmp_path_factory, "real_model", lambda out: fit_tables(
        [extracted], progress=False, codebook_size=64, epochs=5).save(out / "model.dfe"))
    return folder / "model.dfe"


@pytest.fixture(scope="session")
def face_data():
    """Aligned meshes + blendshapes of the shared photos and video tracks (scripts/build_face_model.py)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from build_face_model import collect_face_data

    return collect_face_data(SHARED)


@dataclass
class CliRun:
    """What a finished ``dfe`` command left: like ``subprocess.CompletedProcess``."""

    returncode: int
    stdout: str
    stderr: str


def run_dfe(*args, env: dict | None = None) -> CliRun:
    """Run ``dfe ARGS`` in this process (typer's CliRunner): no interpreter, torch or MediaPipe start
    per call. An exception that escapes the CLI's own error handling shows up as a traceback in
    ``stderr`` and return code 1, as it would for a user."""
    import traceback

    from typer.testing import CliRunner

    from dfe.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return CliRun(result.exit_code, result.stdout, stderr)


def dfe(*args, env: dict | None = None, check: bool = True):
    """``dfe ARGS`` in this process, asserting success unless ``check=False``. A run asked to crash
    (``DFE_CRASH_AT`` in ``env``: the runner ends its process) runs as a subprocess, since ending the
    process is the point."""
    import subprocess
    import sys

    if env and "DFE_CRASH_AT" in env:
        run = subprocess.run([sys.executable, "-m", "dfe.cli", *map(str, args)], capture_output=True, text=True,
                             env={**os.environ, **env}, timeout=600)
    else:
        run = run_dfe(*args, env=env)
    if check:
        assert run.returncode == 0, run.stderr[-2000:]
    return run


def records(out: Path) -> dict[str, dict]:
    """Every record of a run folder's manifest, by input: {column: value}."""
    import sqlite3

    db = sqlite3.connect(out / "manifest.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return {row["input"]: dict(row) for row in db.execute("SELECT * FROM records")}
    finally:
        db.close()
