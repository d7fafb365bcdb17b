"""No fault stops a batch and no output misleads (issue 27): symlink loops, killed and concurrent
runs, label mistakes, faceless videos, native noise, help text, timeline and atlas wording."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import dfe
from conftest import FACES, VIDEOS, records
from dfe.cli import app

pytestmark = pytest.mark.skipif(not FACES.is_dir(), reason=f"shared test media not found at {FACES}")
PHOTO = FACES / "london" / "001_neutral.jpg"
STARTER = Path(dfe.__file__).parent / "data" / "starter.dfe"


def cli(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


def test_symlink_loops_become_failed_records_and_the_batch_goes_on(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(PHOTO, src / PHOTO.name)
    (src / "a_link.jpg").symlink_to("b_link.jpg")
    (src / "b_link.jpg").symlink_to("a_link.jpg")
    (src / "gone.jpg").symlink_to("nothing-here.jpg")
    named = cli("extract", src / PHOTO.name, src / "a_link.jpg", "-o", tmp_path / "named")
    assert named.exit_code == 1, named.output  # a failure, not a crash (rc 2) of the whole batch
    recs = {Path(k).name: v for k, v in records(tmp_path / "named").items()}
    assert recs[PHOTO.name]["status"] == "ok"
    assert recs["a_link.jpg"]["status"] == "failed" and "symbolic link" in recs["a_link.jpg"]["error"]
    folder = cli("extract", src, "-o", tmp_path / "folder")  # inside a folder: a record each, not silence
    recs = {Path(k).name: v for k, v in records(tmp_path / "folder").items()}
    assert folder.exit_code == 1 and recs[PHOTO.name]["status"] == "ok"
    assert {"a_link.jpg", "b_link.jpg", "gone.jpg"} <= set(recs)
    assert "loop" in recs["a_link.jpg"]["error"] and "missing" in recs["gone.jpg"]["error"]


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_killed_runs_leave_no_temp_files_and_claims_are_honoured(tmp_path):
    from dfe.runs.manifest import Manifest

    out = tmp_path / "out"
    photos = [FACES / "london" / f"00{p}_neutral.jpg" for p in (1, 2, 3)]
    assert cli("extract", photos[0], "-o", out).exit_code == 0
    # what kill -9 left behind (dfe 0.3's names and the pid-tagged ones of a dead run)
    stale = [out / ".001_neutral.partial.parquet.k2j3x9.tmp", out / f".002_neutral.partial-{_dead_pid()}.parquet",
             out / ".report.json.abc123.tmp"]
    for f in stale:
        f.write_bytes(b"")
        os.utime(f, (1e9, 1e9))  # long ago
    sleeper = subprocess.Popen(["sleep", "60"])  # a live "other run"
    try:
        m = Manifest(out)
        m.claim(str(photos[1].resolve()), sleeper.pid)
        m.claim(str(photos[2].resolve()), _dead_pid())
        m.close()
        run = cli("extract", *photos, "-o", out)
    finally:
        sleeper.kill()
    assert run.exit_code == 0, run.output
    assert not [f for f in stale if f.exists()]
    recs = {Path(k).name: v for k, v in records(out).items()}
    assert recs["002_neutral.jpg"]["status"] != "ok"  # another live run has it: skipped, reported
    assert "002_neutral.jpg" in run.output and "another dfe run" in run.output
    assert recs["003_neutral.jpg"]["status"] == "ok" and recs["003_neutral.jpg"]["runs"] == 1  # dead claim taken over
    assert recs["001_neutral.jpg"]["runs"] == 1  # up to date, not redone
    assert "1 skipped" in run.output


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Tables of a short video, a faceless video and eight photos; encoded by the starter model."""
    root = tmp_path_factory.mktemp("small")
    photos = [FACES / "london" / f"00{p}_{e}.jpg" for p in (1, 2, 3, 4) for e in ("neutral", "smiling")]
    res = cli("extract", VIDEOS / "single_face.mp4", VIDEOS / "no_face.mp4", *photos, "-o", root / "tables")
    assert res.exit_code == 0, res.output
    assert cli("encode", root / "tables", "-m", STARTER, "-o", root / "enc", "--workers", "1").exit_code == 0
    labels = root / "labels.csv"
    labels.write_text("video,expression\n" + "".join(f"{p.stem},{p.stem.split('_')[1]}\n" for p in photos)
                      + "single_face,neutral\n")
    scores = [p.stem for p in photos] + [f"single_face@{k}" for k in range(8)]  # a score per photo and per 0.3 s
    (root / "scores.csv").write_text("video,score\n" + "".join(f"{v},{k * 1.5 + 1}\n" for k, v in enumerate(scores)))
    return root, res.output


def test_faceless_video_is_named_in_a_warning(small):
    _, output = small
    assert "no_face.mp4" in output and "no face in any frame" in output


def _progress_lines(output: str, desc: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"{desc}: ")]


COMMANDS = {
    "fit": lambda r: ["fit", r / "tables", "-o", r / "m.dfe", "--epochs", "3", "-N", "16", "-K", "2"],
    "encode": lambda r: ["encode", r / "tables", "-m", STARTER, "-o", r / "enc2", "--workers", "1"],
    "atlas": lambda r: ["atlas", STARTER, "-o", r / "atlas", "--tables", r / "enc", "--max-codes", "3"],
    "evaluate": lambda r: ["evaluate", r / "enc", "-m", STARTER, "-o", r / "ev"],
    "evaluate-task": lambda r: ["evaluate-task", r / "enc", "--labels", r / "scores.csv", "--target", "score",
                                "-o", r / "task", "--folds", "2", "--window", "0.3"],
    "events": lambda r: ["events", r / "enc", "-m", STARTER, "-o", r / "events", "--no-timeline"],
}
SUMMARY = {"fit": "saved", "encode": "Finished 10 tables", "atlas": "atlas of 3 codes", "evaluate": "held-out cosine",
           "evaluate-task": "report:", "events": "Finished 10 tables"}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_logs_have_plain_progress_lines_and_a_summary(small, command):
    root, _ = small
    run = cli(*COMMANDS[command](root), env={"DFE_PROGRESS_INTERVAL": "0.01"})
    assert run.exit_code in (0, 1), run.output
    assert "\r" not in run.output  # a log file gets lines, not a terminal's redrawn bar
    assert _progress_lines(run.output, command.split("-")[0]), run.output
    assert SUMMARY[command] in run.output, run.output
    if command in ("encode", "events"):
        assert "events of," not in run.output and "up to date" in run.output and "failed" in run.output


def test_plain_lines_keep_coming_while_nothing_moves_and_the_end_is_honest():
    import io
    import time

    from dfe.progress import Progress

    stream = io.StringIO()
    bar = Progress(11, "extract", unit="frame", interval=0.1, stream=stream)
    bar.update(7)
    time.sleep(0.55)  # a long video in progress: no update for a while
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 4 and "\r" not in stream.getvalue()
    assert "7/11" not in lines[-1] and "64%" not in lines[-1] and "7 frames" in lines[-1]


def test_native_library_noise_stays_out_of_the_terminal(tmp_path, capfd):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cut.mp4").write_bytes((VIDEOS / "single_face.mp4").read_bytes()[:100_000])  # moov atom at the end
    import cv2

    ok, png = cv2.imencode(".png", cv2.imread(str(PHOTO)))
    (bad / "cut.png").write_bytes(png.tobytes()[:20_000])
    capfd.readouterr()
    run = cli("extract", bad, "-o", tmp_path / "out")
    assert run.exit_code == 1 and "cut.mp4" in run.output
    err = capfd.readouterr().err
    assert "moov atom" not in err and "libpng" not in err
    assert "moov atom" in (tmp_path / "out" / "native.log").read_text()  # kept, in the run's log


def test_help_is_plain_at_80_columns():
    run = CliRunner().invoke(app, ["extract", "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert "'dfe[ray]'" in run.output and "<bool>" not in run.output
    assert max(len(line) for line in run.output.splitlines()) <= 80


def test_label_mistakes_are_one_sentence_naming_the_file(small, tmp_path):
    root, _ = small
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for args in (["evaluate-task", root / "enc", "--labels", empty, "--target", "y", "-o", tmp_path / "t"],
                 ["evaluate", root / "enc", "-m", STARTER, "-o", tmp_path / "e", "--labels", empty],
                 ["atlas", STARTER, "-o", tmp_path / "a", "--tables", root / "enc", "--labels", empty]):
        run = cli(*args)
        assert run.exit_code == 2 and str(empty) in run.output and "No columns to parse" not in run.output, run.output
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("video,y\nclip_17,a\nclip_18,b\n")
    run = cli("evaluate-task", root / "enc", "--labels", wrong, "--target", "y", "-o", tmp_path / "t")
    assert run.exit_code == 2 and str(wrong) in run.output
    assert "clip_17" in run.output and "001_neutral" in run.output  # an example of each side


def _events(n_codes: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_codes):
        on = float(rng.uniform(0, 9))
        rows.append({"label": f"c{c}", "code": c, "level": 1 + c % 2, "onset": on, "apex": on + 0.1, "offset": on + 0.5,
                     "duration": 0.5, "peak_strength": 0.05 + 0.01 * c, "resting": False})
    return pd.DataFrame(rows)


def test_timeline_says_what_it_left_out_and_shows_strength():
    from dfe.views.timeline import bar_colours, legend_levels, timeline_note

    ev = _events(30)
    note = timeline_note(ev, max_rows=24)
    assert "24 of 30 codes" in note and "--max-rows" in note
    assert timeline_note(_events(5), max_rows=24) == ""
    assert legend_levels(ev[ev["level"] == 2]) == [2]  # no legend entry for a level not drawn
    colours = bar_colours(ev)
    weak, strong = colours[ev["peak_strength"].idxmin()], colours[ev["peak_strength"].idxmax()]
    assert sum(strong[:3]) < sum(weak[:3]) - 0.3  # stronger is visibly darker


def test_atlas_pages_explain_share_and_similarity_and_scale_per_code(tmp_path):
    from dfe.views.atlas import build_atlas
    from dfe.tokens.tokenizer import Tokenizer

    tok = Tokenizer.load(STARTER)
    res = build_atlas(tok, tmp_path / "atlas", max_codes=3, progress=False, model_path="my model.dfe")
    page = (tmp_path / "atlas" / "codes" / f"code_{res.codes[0]:04d}.html").read_text()
    assert "share" in page and "of the movement" in page and "similarity" in page and "reproduce" in page
    assert "this code's own peak" in page  # thumbnails scaled per code, the scale stated
    assert "white-space:pre" in page or "<pre" in page  # commands copy-paste whole


def test_event_features_of_photos_warn(caplog):
    from dfe.analysis.features import EventFeatures

    photos = [pd.DataFrame({"video": [f"p{i}"], "frame": [0], "timestamp": [0.0], "face_id": [0], "success": [1],
                            "tok_1": [3], "tok_2": [5]}) for i in range(20)]
    with caplog.at_level("WARNING"):
        X = EventFeatures(codebook_size=16).fit_transform(photos)
    assert X.shape == (20, 0)
    assert "single" in caplog.text and "photo" in caplog.text
