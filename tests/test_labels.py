"""Labels files: ids and groups are text in every command ('001' is not 1), and a person split
never quietly becomes a per-video one."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dfe.analysis.labels import groups_for, read_labels, read_video_features
from dfe.runs.demo import starter_model_path

from conftest import FACES, run_dfe

PEOPLE = sorted({int(p.name[:3]) for p in (FACES / "london").glob("*_neutral.jpg")})


def test_read_labels_keeps_ids_as_text_and_names_the_file_when_empty(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("video,person,score\n0010,001,3\n0011,001,\n")
    lab = read_labels(path)
    assert list(lab["video"]) == ["0010", "0011"] and list(lab["person"]) == ["001", "001"]
    assert lab["score"].isna().tolist() == [False, True]
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv is empty"):
        read_labels(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("video,person\n")
    with pytest.raises(ValueError, match=r"header\.csv has a header but no rows"):
        read_labels(tmp_path / "header.csv")


def test_groups_for_refuses_to_fall_back_to_one_group_per_video(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("video,person\n0010,001\n0011,001\n")
    videos = pd.Series(["0010", "0011", "0020"])
    with pytest.raises(ValueError, match=r"labels\.csv gives no 'person' for 1 of 3 videos \(e\.g\. '0020'"):
        groups_for(videos, read_labels(path), "person", path)
    assert list(groups_for(videos[:2], read_labels(path), "person", path)) == ["001", "001"]


def test_user_features_keep_their_ids_as_text(tmp_path):
    path = tmp_path / "features.csv"
    path.write_text("video,AU12_mean\n007,0.5\n010,0.25\n")
    table = read_video_features(path)
    assert list(table["video"]) == ["007", "010"] and table["AU12_mean"].tolist() == [0.5, 0.25]
    path.write_text("video,AU12_mean\n007,high\n")
    with pytest.raises(ValueError, match="AU12_mean"):
        read_video_features(path)


@pytest.fixture()
def numbered_tables(extracted, tmp_path):
    """The London photo tables under number-like ids: person 001's neutral is '0010', smile '0011'."""
    folder = tmp_path / "tables"
    folder.mkdir()
    rows = []
    for p in PEOPLE:
        for k, kind in enumerate(("neutral", "smiling")):
            (folder / f"{p:03d}{k}.parquet").symlink_to(extracted / f"{p:03d}_{kind}.parquet")
            rows.append((f"{p:03d}{k}", f"{p:03d}", kind))
    labels = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=["video", "person", "expression"]).to_csv(labels, index=False)
    return folder, labels


def test_evaluate_holds_out_whole_people_with_number_like_ids(numbered_tables, tmp_path):
    folder, labels = numbered_tables
    out = tmp_path / "report"
    run = run_dfe("evaluate", folder, "--model", starter_model_path(), "--labels", labels, "--group", "person", "-o", out)
    assert run.returncode == 0, run.stderr
    split = json.loads((out / "report.json").read_text())["split"]
    assert split["by"] == "person (person)"
    test_people = set(split["test_groups"])
    assert test_people and test_people <= {f"{p:03d}" for p in PEOPLE}, test_people
    # both photos of every held-out person are held out, and no other photo is
    assert sorted(split["test_videos"]) == sorted(f"{p}{k}" for p in test_people for k in (0, 1))


def test_evaluate_names_the_labels_file_when_a_video_has_no_person(numbered_tables, tmp_path):
    folder, labels = numbered_tables
    lab = pd.read_csv(labels, dtype=str)
    lab.iloc[1:].to_csv(labels, index=False)  # '0010' loses its row
    run = run_dfe("evaluate", folder, "--model", starter_model_path(), "--labels", labels, "--group", "person",
                  "-o", tmp_path / "r")
    assert run.returncode == 2 and str(labels) in run.stderr and "'0010'" in run.stderr, run.stderr
