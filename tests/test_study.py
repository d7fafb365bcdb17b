"""dfe study: one command from media + labels to index.html and results.json, resumable.

The small study: 6 London people (smiling and neutral photos, 12 inputs) plus one file that is not
a video, London's own labels file (its first column names the photos by path), grouped by person,
a tiny dictionary fitted on the study (--fit) and refitted per outer fold. Expected values come from
the labels file and the media themselves, not from the code under test."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import os
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from conftest import FACES, VIDEOS, run_dfe

LONDON = FACES / "london"
PEOPLE = [f"{i:03d}" for i in range(1, 11)]  # 10 people: a 2-fold split trains each dictionary on 10 photos
TINY = ["--fit", "-N", "8", "-K", "2", "--epochs", "2", "--folds", "2", "--seeds", "1", "--dynamic", "off",
        "--workers", "1", "--atlas-codes", "8"]


def _photos(people):
    return [LONDON / f"{p}_{e}.jpg" for p in people for e in ("neutral", "smiling")]


def _without_timing(results: dict) -> dict:
    r = json.loads(json.dumps(results))
    r.pop("timing")
    return r


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    broken = root / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    out = root / "study"
    run = run_dfe("study", *_photos(PEOPLE), VIDEOS / "single_face.mp4", broken, "--labels", FACES / "london.csv", "--target", "expression",
                  "--group", "person", "-o", out, *TINY)
    return run, out, broken


@pytest.mark.slow
def test_study_writes_every_output(small_study):
    run, out, broken = small_study
    assert run.returncode == 1, run.stderr[-3000:]  # one input failed: the study finishes, the exit code says so
    assert "report:" in run.stdout and "[8/8] report" in run.stderr and "study ETA" in run.stderr
    r = json.loads((out / "results.json").read_text())
    c = r["corpus"]
    # 20 photos with one face each, single_face.mp4's 72 frames (a face in each), one failed input
    assert (c["n_ok"], c["n_failed"], c["photos"], c["videos"], c["people"]) == (21, 1, 20, 1, 10)
    assert (c["frames"], c["faces"]) == (20 + 72, 20 + 72)
    failed = [i for i in c["inputs"] if i["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["input"] == str(broken.resolve()) and "video" in failed[0]["error"]
    # labels: london.csv names photos by relative path; every tested input got its own row's class
    truth = pd.read_csv(FACES / "london.csv", dtype=str)
    truth["id"] = truth["file"].map(lambda f: Path(f).stem)
    truth = truth.set_index("id")
    preds = pd.read_csv(out / "task" / "predictions.csv", dtype={"video": str, "group": str})
    dfe_preds = preds[preds["features"] == "dfe tokens (BoW)"]
    assert sorted(dfe_preds["video"]) == sorted(p.stem for p in _photos(PEOPLE))
    assert all(truth.at[v, "expression"] == y for v, y in zip(dfe_preds["video"], dfe_preds["y"]))
    assert all(truth.at[v, "person"] == g for v, g in zip(dfe_preds["video"], dfe_preds["group"]))
    # no person on both sides of a fold: a group's two photos are always tested in the same fold
    assert dfe_preds.groupby("group")["fold"].nunique().max() == 1
    # every baseline, and scores recomputed from the predictions themselves
    from sklearn.metrics import f1_score

    p = r["prediction"]
    names = {row["features"] for row in p["rows"]}
    assert {"dfe tokens (BoW)", "blendshape functionals (AU-like)", "psi functionals",
            "action units (OpenFace-style AU_r functionals)"} <= names
    for row in p["rows"]:
        sub = preds[preds["features"] == row["features"]]
        assert row["macro_f1"] == pytest.approx(f1_score(sub["y"], sub["pred"], average="macro"))
        assert row["ci95_low"] <= row["macro_f1"] <= row["ci95_high"]
    assert p["chance"] == 0.5 and p["refit_per_fold"] and "fitted per fold" in p["tokens"]
    # fidelity: dfe's prefixes and the baselines at equal bits on held-out people
    f = r["fidelity"]
    assert len(f["level_curve_cosine"]) == 2 and any(x["encoding"].startswith("residual k-means") for x in f["rows"])
    assert f["split"]["n_test_groups"] >= 1
    # provenance: every figure says whether the face model and the dictionary saw the tested people
    for figure in ("dictionary", "fidelity", "prediction"):
        assert "face model" in r["provenance"][figure]
    assert "No tested person's frames shaped the codes" in r["provenance"]["prediction"]
    assert r["methods"].count("macro_f1") >= 1 and "refitted in every outer fold" in r["methods"]
    # study.toml repeats the run: it reads back to the same configuration
    cfg = tomllib.loads((out / "study.toml").read_text())
    assert cfg["target"] == "expression" and cfg["fit"] is True and cfg["codebook_size"] == 8
    assert Path(cfg["output"]) == out.resolve()


@pytest.mark.slow
def test_index_has_every_image(small_study):
    _, out, broken = small_study
    page = (out / "index.html").read_text()
    srcs = re.findall(r"<img src='([^']+)'", page)
    assert "figures/fidelity.png" in srcs and "figures/prediction.png" in srcs
    assert any(s.startswith("atlas/codes/code_") for s in srcs)  # top codes and per-label codes with pictures
    for s in srcs:
        assert (out / s).is_file() and (out / s).stat().st_size > 500, s
    assert "broken.mp4" in page and "Methods" in page and "events/single_face.timeline.png" in srcs
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium to open the page in")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", (out / "index.html").as_uri()], capture_output=True, text=True, timeout=120).stdout
    shown = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert shown, dom[:500]
    assert shown.group(1) == shown.group(2) == str(len(srcs))


@pytest.mark.slow
def test_rerun_skips_every_finished_step(small_study):
    run, out, _ = small_study
    first = json.loads((out / "results.json").read_text())
    again = run_dfe("study", "--config", out / "study.toml")
    assert again.returncode == 1, again.stderr[-2000:]
    second = json.loads((out / "results.json").read_text())
    assert set(second["timing"]["steps"].values()) == {"up to date"}, second["timing"]["steps"]
    assert _without_timing(second) == _without_timing(first)
    assert second["timing"]["extract"] < max(0.5 * first["timing"]["extract"], 1.0)


def test_dry_run_prints_the_plan(tmp_path):
    run = run_dfe("study", *_photos(PEOPLE[:2]), VIDEOS / "single_face.mp4", "--labels", FACES / "london.csv",
                  "--target", "expression", "-o", tmp_path / "s", "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "5 inputs (1 videos, 4 photos, about 76 frames)" in run.stdout  # single_face.mp4: 72 frames
    for step in ("extract", "dictionary", "encode", "events", "atlas", "evaluate", "task", "report"):
        assert step in run.stdout
    assert "estimated time:" in run.stdout
    assert not (tmp_path / "s").exists()


def test_bad_study_options_are_one_sentence(tmp_path):
    run = run_dfe("study", LONDON / "001_neutral.jpg", "--labels", tmp_path / "none.csv", "--target", "expression",
                  "-o", tmp_path / "s")
    assert run.returncode == 2 and "labels file" in run.stderr and "none.csv" in run.stderr
    run = run_dfe("study", LONDON / "001_neutral.jpg", "--labels", FACES / "london.csv", "--target", "x",
                  "--fit", "--model", "m.dfe", "-o", tmp_path / "s")
    assert run.returncode == 2 and "not both" in run.stderr


def test_step_records_redo_only_changed_inputs(tmp_path):
    """steps.json: a step is up to date only for the same input hash and with its outputs present;
    a manifest's fingerprint follows the content of the outputs it names."""
    from dfe.runs.manifest import Manifest, Record, file_sha256
    from dfe.runs.study import StepRecords, manifest_fingerprint

    (tmp_path / "a.parquet").write_bytes(b"one")
    (tmp_path / "b.parquet").write_bytes(b"two")
    m = Manifest(tmp_path)
    for stem in "ab":
        out = tmp_path / f"{stem}.parquet"
        m.put(Record(f"/media/{stem}.mp4", stem, "ok", str(out), output_sha256=file_sha256(out)))
    m.close()
    both = manifest_fingerprint(tmp_path, [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")])
    only_a = manifest_fingerprint(tmp_path, [str(tmp_path / "a.parquet")])
    assert both != only_a
    rec = StepRecords(tmp_path)
    rec.done("atlas", both, 1.0)
    again = StepRecords(tmp_path)  # read back from steps.json
    assert again.up_to_date("atlas", both, [tmp_path / "a.parquet"])
    assert not again.up_to_date("atlas", only_a, [tmp_path / "a.parquet"])  # other inputs
    assert not again.up_to_date("atlas", both, [tmp_path / "gone.html"])  # output missing
    assert not again.up_to_date("task", both, [])  # never ran
    m = Manifest(tmp_path)  # one table rewritten with other content: the fingerprint moves
    (tmp_path / "b.parquet").write_bytes(b"three")
    m.put(Record("/media/b.mp4", "b", "ok", str(tmp_path / "b.parquet"), output_sha256=file_sha256(tmp_path / "b.parquet")))
    m.close()
    assert manifest_fingerprint(tmp_path, [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]) != both


def test_labels_name_inputs_by_path_or_name(tmp_path):
    """London's labels name photos by paths relative to the labels file: they become table ids."""
    from dfe.runs.study_plan import StudyConfig
    from dfe.runs.study import normalise_labels

    ids = {str(LONDON / "001_neutral.jpg"): "001_neutral", str(LONDON / "001_smiling.jpg"): "001_smiling",
           "/elsewhere/clip.mp4": "clip"}
    (tmp_path / "lab.csv").write_text("file,expression,person\nclip.mp4,neutral,007\n")
    lab = normalise_labels(StudyConfig(["x"], str(FACES / "london.csv"), "expression", "o", group="person"), ids)
    row = lab.set_index("video")
    assert row.at["001_smiling", "expression"] == "smiling" and row.at["001_neutral", "person"] == "001"
    lab = normalise_labels(StudyConfig(["x"], str(tmp_path / "lab.csv"), "expression", "o", group="person"), ids)
    assert lab["video"].tolist() == ["clip"] and lab["person"].tolist() == ["007"]  # by file name; ids stay text


def test_study_toml_round_trip(tmp_path):
    from dfe.runs.study_plan import StudyConfig, read_config, toml_text

    cfg = StudyConfig(["a b/clip.mp4", 'q"uote.jpg'], "labels.csv", "stress", str(tmp_path), group="person", fit=True,
                      baselines=["of.csv"], fps=10.0).resolved()
    (tmp_path / "study.toml").write_text(toml_text(cfg))
    assert read_config(tmp_path / "study.toml") == cfg
    (tmp_path / "bad.toml").write_text(toml_text(cfg) + "colour = 3\n")
    with pytest.raises(ValueError, match="unknown keys: colour"):
        read_config(tmp_path / "bad.toml")


@pytest.mark.slow
def test_killed_study_resumes_to_the_same_results(tmp_path):
    """A kill in the middle of encode, then a rerun: the same results.json as an uninterrupted run,
    and the rerun's extract step redoes no finished input."""
    people = [f"{i:03d}" for i in range(1, 13)]
    media = [*_photos(people), VIDEOS / "single_face.mp4"]
    args = ["--labels", FACES / "london.csv", "--target", "expression", "--group", "person", *TINY]
    whole = run_dfe("study", *media, "-o", tmp_path / "whole", *args)
    assert whole.returncode == 0, whole.stderr[-2000:]
    env = {**os.environ, "DFE_STUDY_CRASH_IN": "encode:4", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    killed = subprocess.run([sys.executable, "-m", "dfe.cli", "study", *map(str, media), "-o", str(tmp_path / "killed"),
                             *map(str, args)], capture_output=True, text=True, env=env, timeout=900)
    assert killed.returncode == 99, killed.stderr[-2000:]
    assert not (tmp_path / "killed" / "results.json").exists()
    assert len(list((tmp_path / "killed" / "encoded").glob("*.parquet"))) == 4
    rerun = run_dfe("study", "--config", tmp_path / "killed" / "study.toml")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    a = json.loads((tmp_path / "whole" / "results.json").read_text())
    b = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert b["timing"]["steps"]["extract"] == "up to date"
    assert b["timing"]["extract"] <= 0.1 * a["timing"]["extract"]
    strip = lambda r: json.loads(json.dumps(_without_timing(r)).replace(str(tmp_path / "killed"), "OUT")
                                 .replace(str(tmp_path / "whole"), "OUT"))
    assert strip(a) == strip(b)
    # a changed labels file redoes only what depends on it
    labels = pd.read_csv(FACES / "london.csv", dtype=str)
    labels = labels[labels["person"] != "012"]
    labels.to_csv(tmp_path / "labels.csv", index=False)
    cfg = (tmp_path / "killed" / "study.toml").read_text().replace(str(FACES / "london.csv"), str(tmp_path / "labels.csv"))
    (tmp_path / "killed" / "study.toml").write_text(cfg)
    changed = run_dfe("study", "--config", tmp_path / "killed" / "study.toml")
    assert changed.returncode == 0, changed.stderr[-2000:]
    steps = json.loads((tmp_path / "killed" / "results.json").read_text())["timing"]["steps"]
    assert {k: steps[k] for k in ("extract", "dictionary", "encode", "events")} == dict.fromkeys(
        ("extract", "dictionary", "encode", "events"), "up to date")
    assert steps["task"] == "ran" and steps["evaluate"] == "ran"
