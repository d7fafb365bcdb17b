"""Facial events: definitions by hand, the fast-vs-slow-onset synthetic check, the Wolfgang clip
against hand-marked intervals, ELAN round trips and the `dfe events` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dfe
from dfe.analysis.events import EventOptions, hysteresis, segments, token_events, track_events

from conftest import run_dfe

HERE = Path(__file__).resolve().parent
STARTER = Path(dfe.__file__).parent / "data" / "starter.dfe"
WOLFGANG = "WolfgangLanger_Pexels"


def test_segments_bridge_short_gaps_and_drop_flicker_by_hand():
    t = np.arange(20) / 10  # 10 frames per second
    active = np.array([0, 1, 2, 4, 5, 9, 15, 16, 17, 18])
    # 2 -> 4: absent 0.1 s (bridged); 5 -> 9: absent 0.3 s (new event); 9 alone lasts 0.1 s (< 0.15: flicker)
    assert segments(active, t, max_gap=0.1, min_duration=0.15) == [(0, 5), (15, 18)]
    assert segments(active, t, max_gap=0.0, min_duration=0.0) == [(0, 2), (4, 5), (9, 9), (15, 18)]
    assert segments(active, t, max_gap=0.35, min_duration=0.0) == [(0, 9), (15, 18)]
    assert segments(np.array([], dtype=int), t, 0.1, 0.1) == []


def test_hysteresis_by_hand():
    start = np.array([0, 1, 0, 0, 0, 0, 1, 0], dtype=bool)
    keep = np.array([0, 1, 1, 1, 0, 1, 1, 1], dtype=bool)
    # on at 1, held through 3, off at 4; frame 5 is "keep" but nothing restarted it; on again at 6
    assert hysteresis(start, keep).tolist() == [0, 1, 1, 1, 0, 0, 1, 1]
    scores = np.array([[0.2], [0.6], [0.4], [0.35], [0.25], [0.45], [0.55]])
    assert hysteresis(scores >= 0.5, scores >= 0.3)[:, 0].tolist() == [0, 1, 1, 1, 0, 0, 1]


def test_track_events_timing_strength_and_resting_by_hand():
    t = np.arange(10) / 10
    tokens = np.array([[5, 1], [5, 2], [5, 1], [5, 1], [7, 3], [7, 3], [7, 3], [7, 3], [7, 3], [7, 3]])
    strength = np.full(tokens.shape, np.nan)
    strength[:4, 0] = [0.1, 0.5, 0.3, 0.2]
    ev = track_events(t, tokens, strength, EventOptions(max_gap=0.1, min_duration=0.15, resting_share=0.6))
    five = ev[ev["code"] == 5].iloc[0]
    assert (five["onset"], five["apex"], five["offset"]) == pytest.approx((0.0, 0.1, 0.4))
    assert five["duration"] == pytest.approx(0.4) and five["peak_strength"] == pytest.approx(0.5)
    assert five["onset_speed"] == pytest.approx((0.5 - 0.1) / 0.1)
    assert five["offset_speed"] == pytest.approx((0.5 - 0.2) / (0.4 - 0.1))
    assert five["level"] == 1 and not five["resting"]
    # code 1 at level 2: frames 0, 2, 3 (the 0.1 s gap at frame 1 is bridged)
    one = ev[ev["code"] == 1].iloc[0]
    assert (one["onset"], one["offset"], one["level"], one["frames"]) == pytest.approx((0.0, 0.4, 2, 3))
    assert ev.loc[ev["code"] == 7, "resting"].all() and ev.loc[ev["code"] == 3, "resting"].all()  # 6 of 10 frames
    assert 2 not in set(ev["code"])  # one frame: flicker
    only_first = track_events(t, tokens, strength, EventOptions(levels=1, min_duration=0.15))
    assert set(only_first["code"]) == {5, 7}


def test_strength_reads_as_the_codes_peak_displacement(synthetic_tokenizer):
    tok = synthetic_tokenizer
    codes = np.array([3, 11])
    d = tok.decode_code(codes)
    peak = np.linalg.norm(d.reshape(2, -1, 3), axis=2).max(1)  # largest vertex displacement, cm
    psi = np.stack([0.7 * d[0], 0.7 * d[0] + 0.2 * d[1]])
    s = tok.code_strength(psi, codes)
    assert s[0, 0] == pytest.approx(0.7 * peak[0], rel=1e-4)
    cross = d[0] @ d[1] / (d[1] @ d[1])  # least-squares multiple of d1 in 0.7 d0 + 0.2 d1
    assert s[1, 1] == pytest.approx((0.7 * cross + 0.2) * peak[1], rel=1e-3)
    tokens = np.array([[3, 11], [11, 3]])
    assert tok.strength(psi, tokens) == pytest.approx(np.array([[s[0, 0], tok.code_strength(psi[:1], [11])[0, 0]],
                                                                [s[1, 1], tok.code_strength(psi[1:], [3])[0, 0]]]), rel=1e-4)


def test_dynamic_features_tell_fast_from_slow_onsets_where_the_bag_cannot(synthetic_tokenizer):
    """Class A: fast onset (3 frames), slow offset (15); class B: the same videos reversed in time."""
    from dfe.analysis.features import BagOfTokens, EventFeatures
    from dfe.analysis.task import TaskData, cross_validate
    from dfe.extraction.synthetic import event_sequences
    from dfe.tokens.tables import encode_table

    tok = synthetic_tokenizer
    seq = event_sequences()
    videos = [encode_table(v, tok) for v in seq.videos]
    ids = [str(v["video"].iloc[0]) for v in videos]
    N = tok.codebook_size
    sets = {"static": BagOfTokens(N, weighting="log", norm="l2"), "dynamic": EventFeatures(N)}
    f1 = {}
    for name, y in (("real", seq.y), ("null", seq.y_null)):
        data = TaskData(videos, ids, y, np.asarray(ids), "classification", [])
        folds, _ = cross_validate(data, N, 5, 0, progress=False, sets=sets)
        f1[name] = folds.groupby("features")["macro_f1"].mean()
    assert f1["real"]["static"] <= 0.65, f1
    assert f1["real"]["dynamic"] >= 0.9, f1
    assert f1["null"]["dynamic"] <= 0.65 and f1["null"]["static"] <= 0.65, f1


def test_event_statistics_by_hand():
    from dfe.analysis.features import event_statistics

    ev = pd.DataFrame({"face_id": 0, "code": [1, 2, 0, 1], "onset": [0.0, 0.5, 0.6, 3.0], "offset": [1.0, 2.0, 0.7, 4.0],
                       "duration": [1.0, 1.5, 0.1, 1.0], "apex": [0.2, 1.0, 0.6, 3.5],
                       "onset_speed": [2.0, 1.0, 0.0, 4.0], "offset_speed": [1.0, 1.0, 1.0, 1.0]})
    m = event_statistics(ev, 3, minutes=2.0).toarray().ravel()
    stats, trans, co = m[:18].reshape(6, 3), m[18:27].reshape(3, 3), m[27:].reshape(3, 3)
    assert stats[0].tolist() == [0.5, 1.0, 0.5]  # events per minute
    assert stats[1].tolist() == pytest.approx([0.1, 1.0, 1.5]) and stats[2].tolist() == pytest.approx([0.1, 1.0, 1.5])
    assert stats[3].tolist() == pytest.approx([0.0, 3.0, 1.0])
    assert stats[5].tolist() == pytest.approx([0.0, (0.2 + 0.5) / 2, 0.5 / 1.5])
    # order of onsets: 1, 2, 0, 1 -> transitions 1->2, 2->0, 0->1 (per minute: 0.5 each)
    assert trans[1, 2] == trans[2, 0] == trans[0, 1] == 0.5 and trans.sum() == 1.5
    # overlaps: (1, 2), (0, 1), (0, 2); the second event of code 1 overlaps nothing
    assert co[0, 1] == co[0, 2] == co[1, 2] == 0.5 and co.sum() == 1.5


@pytest.fixture(scope="module")
def wolfgang(extracted):
    from dfe.table import read_table
    from dfe.tokens.tables import encode_table
    from dfe.tokens.tokenizer import Tokenizer

    tok = Tokenizer.load(STARTER)
    df = encode_table(read_table(extracted / f"{WOLFGANG}.parquet"), tok)
    df["video"] = WOLFGANG
    return df, tok


def test_wolfgang_events_match_hand_marked_intervals(wolfgang):
    df, tok = wolfgang
    marks = pd.read_csv(HERE / "data" / "wolfgang_intervals.csv")
    ev = token_events(df, tok)
    moving = ev[~ev["resting"]]
    for lab, start, end in zip(marks["label"], marks["start"], marks["end"]):
        inter = np.clip(np.minimum(moving["offset"], end) - np.maximum(moving["onset"], start), 0, None)
        both = np.minimum(inter / (end - start), inter / moving["duration"])  # covers it and lies mostly in it
        assert both.max() >= 0.5, (lab, moving.loc[both.idxmax()].to_dict())
    t = df.loc[df["success"] == 1, "timestamp"].to_numpy()
    minutes = (t.max() - t.min()) / 60
    raw = token_events(df, options=EventOptions.raw())
    flicker_per_minute = [(e["duration"] < 0.1 - 1e-9).sum() / minutes for e in (raw, ev)]
    assert flicker_per_minute[0] > 100 and flicker_per_minute[1] == 0
    inside = [(t >= on - 1e-9) & (t < off - 1e-9) for on, off in zip(moving["onset"], moving["offset"])]
    assert np.logical_or.reduce(inside).mean() > 0.9  # frames inside a (non-resting) event
    # without the model the table's strength columns still give each event its apex inside it
    plain = token_events(df)
    assert ((plain["apex"] >= plain["onset"]) & (plain["apex"] < plain["offset"])).all()
    assert plain["peak_strength"].notna().all()


def test_eaf_round_trip_and_window_labels(wolfgang, tmp_path):
    from dfe.analysis.elan import eaf_labels, read_eaf, window_label, write_eaf
    from dfe.analysis.task import load_task

    df, tok = wolfgang
    ev = token_events(df, tok)
    path = write_eaf(ev, tmp_path / "eaf" / f"{WOLFGANG}.eaf", media=df["file"].iloc[0])
    back = read_eaf(path)
    assert len(back) == len(ev)
    want = sorted(zip(ev["label"], (ev["onset"] * 1000).round(), (ev["offset"] * 1000).round()))
    got = sorted(zip(back["value"], (back["start"] * 1000).round(), (back["end"] * 1000).round()))
    assert got == want
    assert set(back["tier"]) == {lab + (" (resting)" if r else "") for lab, r in zip(ev["label"], ev["resting"])}
    write_eaf(ev, tmp_path / "lv" / f"{WOLFGANG}.eaf", tiers="level")
    lv = read_eaf(tmp_path / "lv" / f"{WOLFGANG}.eaf")
    for _, tier in lv.groupby("tier"):
        tier = tier.sort_values("start")
        assert (tier["start"].to_numpy()[1:] >= tier["end"].to_numpy()[:-1]).all()  # ELAN: no overlaps in a tier
    # window labels by hand: a 4 s window mostly covered by "a"
    ann = pd.DataFrame({"start": [0.5, 3.0], "end": [3.0, 3.5], "value": ["a", "b"]})
    assert window_label(ann, 0.0, 4.0) == "a" and window_label(ann, 3.2, 8.0) == "none"
    labels = eaf_labels(tmp_path / "lv", "dfe level 1", window=5.0, durations={WOLFGANG: 19.7})
    assert labels["video"].tolist() == [f"{WOLFGANG}@{k}" for k in range(4)]
    table = tmp_path / "tables" / f"{WOLFGANG}.parquet"
    table.parent.mkdir()
    df.drop(columns=["video"]).to_parquet(table)
    data = load_task([table], tmp_path / "lv", "dfe level 1", window=5.0)
    assert data.ids == labels["video"].tolist() and list(data.y) == labels["dfe level 1"].tolist()


def test_duplicate_label_rows_are_one_sentence(tmp_path, wolfgang):
    from dfe.analysis.task import load_task

    df, _ = wolfgang
    table = tmp_path / f"{WOLFGANG}.parquet"
    df.drop(columns=["video"]).to_parquet(table)
    (tmp_path / "labels.csv").write_text(f"video,y\n{WOLFGANG},1\n{WOLFGANG},0\n")
    with pytest.raises(ValueError, match="more than one row"):
        load_task([table], tmp_path / "labels.csv", "y")


def test_events_cli_writes_tables_eaf_and_timeline_and_resumes(extracted, tmp_path):
    tables = tmp_path / "in"
    tables.mkdir()
    (tables / f"{WOLFGANG}.parquet").symlink_to(extracted / f"{WOLFGANG}.parquet")
    (tables / "broken.csv").write_text("not,a,table\n1,2,3\n")
    out = tmp_path / "events"
    cmd = ["events", str(tables), "--model", str(STARTER), "-o", str(out)]
    run = run_dfe(*cmd)
    assert run.returncode == 1 and "broken.csv" in run.stderr and "not a dfe per-frame table" in run.stderr
    ev = pd.read_parquet(out / f"{WOLFGANG}.events.parquet")
    assert len(ev) > 20 and (ev["duration"] >= 0.1 - 1e-9).all() and (ev["video"] == WOLFGANG).all()
    from dfe.analysis.elan import read_eaf

    named = ev[ev["name"] != "unnamed"].iloc[0]  # annotations carry the code's name in words
    assert f"{named['label']}: {named['name']}" in set(read_eaf(out / f"{WOLFGANG}.eaf")["value"])
    assert (out / f"{WOLFGANG}.eaf").is_file() and not list(out.glob("*.bak"))
    assert (out / f"{WOLFGANG}.timeline.png").stat().st_size > 20_000
    again = run_dfe(*cmd)
    assert "1 up to date" in again.stdout


def test_event_features_are_remembered_by_content_not_by_object():
    """Cross-validation asks for each video's events in every fold: the second ask is the first's
    answer, and a changed video (same object, new tokens) is computed afresh."""
    from dfe.analysis import features
    from dfe.analysis.events import EventOptions, token_events
    from dfe.analysis.features import event_statistics, video_event_statistics

    t = np.arange(40) / 10.0
    tok = np.where((t > 1) & (t < 2.5), 5, 1)
    df = pd.DataFrame({"timestamp": t, "face_id": 0, "success": 1, "tok_1": tok, "tok_2": 0})
    options = EventOptions()
    expected = event_statistics(token_events(df, options=options), 8, (t[-1] - t[0] + 0.1) / 60).toarray()
    first = video_event_statistics(df, "tokens", options, 8)
    assert np.allclose(first.toarray(), expected)
    assert video_event_statistics(df.copy(), "tokens", options, 8) is first  # same content, another object
    df["tok_1"] = 1  # code 5 never happens now
    changed = video_event_statistics(df, "tokens", options, 8)
    assert changed is not first and not np.allclose(changed.toarray(), first.toarray())
    assert len(features._EVENT_ROWS) <= features._EVENT_ROWS_KEPT
