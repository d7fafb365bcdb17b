"""The runner on its own: a fake stage over text files (no MediaPipe, no torch) through run_stage,
in this process and in a process pool: a record per input, distinct outputs, resume, one bad input
failing alone, options that change the output redo it."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest

from dfe.errors import DfeError
from dfe.runs.executors import Executor, Stage, StageResult, WorkItem, run_stage
from dfe.table import read_table

MANIFEST_COLUMNS = ["input", "id", "status", "output", "size", "mtime_ns", "sha256", "options", "output_sha256",
                    "frames", "faces", "seconds", "error", "version", "runs", "finished"]  # dfe 0.3's schema


class CountWords:
    """A stage a test can reason about: one row per line of a text file, ``success`` where the line
    has words, ``count`` its words (or characters). A file without lines is refused; one whose last
    line has no end keeps its table but counts as failed (as a truncated video); ``die.txt`` ends
    the process that works on it (a native crash) and ``slow.txt`` takes half a second."""

    def __init__(self, unit: str = "words"):
        self.unit = unit

    def __call__(self, item: WorkItem) -> StageResult:
        if item.path.name == "die.txt":
            os._exit(3)
        if item.path.name == "slow.txt":
            time.sleep(0.5)
        text = item.path.read_text()
        lines = text.splitlines()
        if not lines:
            raise DfeError(f"{item.path} has no lines to count")
        counts = [len(line.split()) if self.unit == "words" else len(line) for line in lines]
        table = pd.DataFrame({"frame": range(len(lines)), "success": [int(bool(line.split())) for line in lines],
                              "count": counts, "id": item.id})
        result = StageResult.counted(table)
        if not text.endswith("\n"):
            result.error = f"{item.path} ends inside a line: the last line may be cut (table kept)"
        return result

    def stage(self) -> Stage:
        return Stage("count", self, {"unit": self.unit}, ".csv", unit="file")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def manifest_rows(outdir: Path) -> dict[str, dict]:
    db = sqlite3.connect(outdir / "manifest.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return {Path(r["input"]).relative_to(outdir.parent).as_posix(): dict(r) for r in db.execute("SELECT * FROM records")}
    finally:
        db.close()


@pytest.fixture
def corpus(tmp_path) -> list[Path]:
    """Two files of one name in two folders, a file with a blank line, an empty file, a cut file,
    a dangling link."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "gone.txt").symlink_to("nothing-here.txt")
    return [write(tmp_path / "in" / "a" / "notes.txt", "one two three\n\nfour\n"),
            write(tmp_path / "in" / "b" / "notes.txt", "five six\n"),
            write(tmp_path / "in" / "poem.txt", "a rose\nis a rose is\n"),
            write(tmp_path / "in" / "empty.txt", ""),
            write(tmp_path / "in" / "cut.txt", "no end"),
            tmp_path / "in" / "gone.txt"]


def run(inputs, outdir, unit="words", **kw):
    return {Path(o.input).relative_to(Path(outdir).parent).as_posix(): o
            for o in run_stage(CountWords(unit).stage(), inputs, outdir, show_progress=False, **kw)}


def test_every_input_gets_a_record_and_its_own_table(corpus, tmp_path):
    out = tmp_path / "out"
    outcomes = run(corpus, out)
    assert {k: o.status for k, o in outcomes.items()} == {
        "in/a/notes.txt": "ok", "in/b/notes.txt": "ok", "in/poem.txt": "ok", "in/empty.txt": "failed",
        "in/cut.txt": "failed", "in/gone.txt": "failed"}
    recs = manifest_rows(out)
    assert set(recs) == set(outcomes) and all(list(r) == MANIFEST_COLUMNS for r in recs.values())
    # one stem, two inputs: the first given keeps the stem, the other adds 8 hex of its path
    second = str((tmp_path / "in" / "b" / "notes.txt").resolve())
    assert recs["in/a/notes.txt"]["id"] == "notes"
    assert recs["in/b/notes.txt"]["id"] == f"notes-{hashlib.sha1(second.encode()).hexdigest()[:8]}"
    outputs = [r["output"] for r in recs.values() if r["output"]]
    assert len(set(outputs)) == len(outputs) == 4
    a, b = read_table(out / "notes.csv"), read_table(out / f"{recs['in/b/notes.txt']['id']}.csv")
    assert a["count"].tolist() == [3, 0, 1] and a["success"].tolist() == [1, 0, 1] and b["count"].tolist() == [2]
    assert set(a["id"]) == {"notes"} and set(b["id"]) == {recs["in/b/notes.txt"]["id"]}  # the stage was told the id
    assert (recs["in/a/notes.txt"]["frames"], recs["in/a/notes.txt"]["faces"]) == (3, 2)
    assert recs["in/a/notes.txt"]["output_sha256"] == hashlib.sha256((out / "notes.csv").read_bytes()).hexdigest()
    # a stage's error on purpose is its own sentence, naming the file; an unreadable input is told apart
    assert recs["in/empty.txt"]["error"] == f"{corpus[3]} has no lines to count"
    assert recs["in/gone.txt"]["error"] == "a symbolic link to a missing file (nothing-here.txt)"
    assert recs["in/empty.txt"]["output"] is None and not (out / "empty.csv").exists()
    assert recs["in/cut.txt"]["error"] == f"{corpus[4]} ends inside a line: the last line may be cut (table kept)"
    assert read_table(recs["in/cut.txt"]["output"])["count"].tolist() == [2]
    report = json.loads((out / "report.json").read_text())["results"]
    assert sorted(r["id"] for r in report) == sorted(r["id"] for r in recs.values())
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial files left


def test_a_rerun_resumes_and_changed_options_redo(corpus, tmp_path):
    out = tmp_path / "out"
    run(corpus, out)
    first = {k: (out / Path(r["output"]).name).stat().st_mtime_ns for k, r in manifest_rows(out).items()
             if r["status"] == "ok"}
    again = run(corpus, out)
    assert {k: o.status for k, o in again.items() if k in first} == dict.fromkeys(first, "skipped")
    assert again["in/empty.txt"].status == again["in/cut.txt"].status == "failed"  # a failure is tried again
    recs = manifest_rows(out)
    assert {k: recs[k]["runs"] for k in recs} == {**dict.fromkeys(first, 1), "in/empty.txt": 2, "in/cut.txt": 2,
                                                  "in/gone.txt": 2}
    assert {k: (out / Path(recs[k]["output"]).name).stat().st_mtime_ns for k in first} == first  # not rewritten
    # a mended input is redone; --overwrite redoes only the inputs given
    write(corpus[3], "now\n")
    mended = run([corpus[3], corpus[2]], out, overwrite=True)
    assert mended["in/empty.txt"].status == "ok" and mended["in/poem.txt"].status == "ok"
    assert read_table(out / "empty.csv")["count"].tolist() == [1]
    assert [manifest_rows(out)[k]["runs"] for k in ("in/poem.txt", "in/a/notes.txt")] == [2, 1]
    # other options: every input is redone with them
    chars = run(corpus[:3], out, unit="chars")
    assert [o.status for o in chars.values()] == ["ok"] * 3
    assert read_table(out / "notes.csv")["count"].tolist() == [13, 0, 4]
    assert manifest_rows(out)["in/a/notes.txt"]["runs"] == 2


def test_a_pool_of_two_gives_the_tables_of_one_process(corpus, tmp_path):
    one = run(corpus, tmp_path / "one")
    pool = run(corpus, tmp_path / "pool", executor=Executor(workers=2))
    assert {k: (o.status, o.id, o.frames, o.faces, o.error) for k, o in pool.items()} == \
           {k: (o.status, o.id, o.frames, o.faces, o.error) for k, o in one.items()}
    for o in one.values():
        if o.output:
            pd.testing.assert_frame_equal(read_table(o.output), read_table(tmp_path / "pool" / Path(o.output).name))


def test_a_worker_that_dies_fails_only_its_input(tmp_path):
    """The pool breaks while slow.txt is still at work: it is retried alone, and only die.txt fails."""
    die = write(tmp_path / "in" / "die.txt", "the largest input, so it starts first\n")
    slow = write(tmp_path / "in" / "slow.txt", "still here\n")
    outcomes = run([slow, die], tmp_path / "out", executor=Executor(workers=2))
    assert outcomes["in/slow.txt"].status == "ok" and outcomes["in/die.txt"].status == "failed"
    assert "worker process died" in outcomes["in/die.txt"].error
    assert read_table(tmp_path / "out" / "slow.csv")["count"].tolist() == [2]


def test_an_unknown_engine_is_refused_in_one_sentence():
    with pytest.raises(DfeError, match="the engine must be local or ray, not 'spark'"):
        Executor(engine="spark")
