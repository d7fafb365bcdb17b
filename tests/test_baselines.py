"""OpenFace and py-feat outputs as baselines beside dfe's tokens (`dfe evaluate-task --baseline`)."""

from __future__ import annotations

import csv
import re

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED, run_dfe
from dfe.analysis.baselines import load_baseline
from dfe.analysis.features import BlendshapeFunctionals
from dfe.table import AU_INTENSITY_COLUMNS, AU_PRESENCE_COLUMNS, read_table, write_table

OPENFACE_TEST = SHARED / "openface" / "OpenFace_Test.csv"
FEAT_TEST = SHARED / "openface" / "Feat_Test.csv"
STATS = ("mean", "std", "p10", "p50", "p90", "above_0.5")


def pandas_functionals(frames: pd.DataFrame, columns: list[str]) -> dict[str, float]:
    """The functionals computed here with pandas alone: population std, linear quantiles, share > 0.5."""
    out = {}
    for c in columns:
        x = frames[c].astype(float)
        values = (x.mean(), x.std(ddof=0), x.quantile(0.1), x.quantile(0.5), x.quantile(0.9), (x > 0.5).mean())
        out.update({f"{c}_{s}": v for s, v in zip(STATS, values)})
    return out


def test_openface_csvs_give_the_pandas_functionals(tmp_path):
    """OpenFace_Test.csv as it is (the older ', ' style) and a 2.2-style copy with failed frames:
    per-video functionals of the 35 AU columns over the frames with success == 1, as pandas computes
    them; a table without a CSV is named in one sentence."""
    of = tmp_path / "of"
    of.mkdir()
    (of / "clipA.csv").symlink_to(OPENFACE_TEST)
    raw = pd.read_csv(OPENFACE_TEST, skipinitialspace=True)
    raw.columns = [c.strip() for c in raw.columns]
    au = [c for c in raw.columns if c.startswith("AU") and c[-2:] in ("_r", "_c")]
    assert len(au) == 35  # 17 intensities, 18 presences (../shared/openface/README.md)
    b = raw.copy()
    b.loc[:9, "success"] = 0  # OpenFace's failed frames: their numbers mean nothing
    b.loc[:9, "AU12_r"] = 5.0
    b.loc[50:69, "AU12_r"] = 2.0
    b.to_csv(of / "clipB.csv", index=False)  # OpenFace 2.2's style: no space after commas
    (of / "unrelated.csv").write_text("not,an,openface,file\n1,2,3,4\n")  # matches no table: never read

    base = load_baseline(f"openface:{of}", ["clipA", "clipB", "clipC"])
    table = base.table.set_index("video")
    assert list(table.index) == ["clipA", "clipB"] and table.shape[1] == 35 * 6
    for vid, frames in (("clipA", raw), ("clipB", b[b["success"] == 1])):
        expected = pandas_functionals(frames, au)
        assert set(expected) == set(table.columns)
        got = table.loc[vid, list(expected)].to_numpy(float)
        np.testing.assert_allclose(got, list(expected.values()), rtol=1e-12, atol=1e-12)
    assert table.loc["clipB", "AU12_r_mean"] != pytest.approx(table.loc["clipA", "AU12_r_mean"])
    assert base.name == "openface AU functionals (of)"
    (note,) = base.notes
    assert "1 of 3 tables" in note and "'clipC'" in note and "clipB" not in note
    assert "\n" not in note and not re.search(r"[a-z]\. [A-Z]", note)  # one sentence


def test_pyfeat_csvs_are_read_in_their_layout(tmp_path):
    """Feat_Test.csv (one face): its 20 AU columns (not emotions or pose), each video's functionals;
    a CSV naming several inputs is split by input, and a no-face row (NaN AUs) is left out."""
    with open(FEAT_TEST, newline="") as f:
        header, row = list(csv.reader(f))
    au = [c for c in header if c.startswith("AU")]
    assert len(au) == 20 and "happiness" in header and "Pitch" in header
    values = {c: float(v) for c, v in zip(header, row) if c in au}
    pf = tmp_path / "pf"
    pf.mkdir()
    (pf / "single_face.csv").symlink_to(FEAT_TEST)
    rows = pd.DataFrame([row] * 4, columns=header)
    rows["input"] = ["/data/a.jpg", "/data/a.jpg", "/data/b.jpg", "/data/b.jpg"]
    rows.loc[1, "AU12"] = "0.1"  # a second face in a.jpg
    rows.loc[3, au] = np.nan  # py-feat's row where it found no face
    rows.loc[3, "AU12"] = np.nan
    rows.to_csv(pf / "photos.csv", index=False)
    (pf / "broken.csv").write_text("frame,input\n0,x.jpg\n")

    base = load_baseline(f"pyfeat:{pf}", ["single_face", "a", "b", "c"])
    table = base.table.set_index("video")
    assert sorted(table.index) == ["a", "b", "single_face"]
    assert list(table.columns) == [f"{c}_{s}" for s in STATS for c in au]
    one = table.loc["single_face"]
    for c, v in values.items():  # one frame: every percentile is the value, no spread
        assert [one[f"{c}_{s}"] for s in STATS] == pytest.approx([v, 0, v, v, v, float(v > 0.5)], abs=1e-12)
    assert table.loc["a", "AU12_mean"] == pytest.approx((values["AU12"] + 0.1) / 2)
    assert table.loc["a", "AU12_std"] == pytest.approx(abs(values["AU12"] - 0.1) / 2)
    assert table.loc["b", "AU12_mean"] == pytest.approx(values["AU12"]) and table.loc["b", "AU12_std"] == 0
    (note,) = base.notes
    assert "'c'" in note and "broken.csv" in note and "AU01" in note


def test_dfe_table_as_openface_csv_reads_back_as_its_own_functionals(extracted, tmp_path):
    """A dfe table written by `dfe openface` and read back as a baseline: the AU columns the two share
    (dfe's geometry AU*_r and AU*_c, the same numbers, never AU*_r_blendshapes) give dfe's own
    blendshape-baseline functionals of the table, over the same frames (face_noface has frames
    without a face)."""
    src = extracted / "face_noface.parquet"
    res = run_dfe("openface", str(src), "-o", str(tmp_path / "of"))
    assert res.returncode == 0, res.stderr
    table = read_table(src)
    assert (table["success"] == 0).any() and (table["success"] == 1).any()
    base = load_baseline(f"openface:{tmp_path / 'of'}", ["face_noface"])
    got = base.table.set_index("video").loc["face_noface"]
    shared = AU_INTENSITY_COLUMNS + AU_PRESENCE_COLUMNS
    assert [c.removesuffix("_mean") for c in got.index if c.endswith("_mean")] == shared
    own = BlendshapeFunctionals(columns=shared).transform([table])[0]
    np.testing.assert_allclose(got.to_numpy(float), own, rtol=1e-6, atol=1e-7)
    face = table[table["success"] == 1]
    assert got["AU12_r_mean"] == pytest.approx(face["AU12_r"].astype(float).mean(), rel=1e-6)
    assert got["AU12_r_p90"] == pytest.approx(face["AU12_r"].astype(float).quantile(0.9), rel=1e-6)
    assert got["AU12_r_mean"] > 0 and not base.notes


def _task(tmp_path, n_people: int = 8):
    """Tables with random tokens (no signal), and OpenFace / py-feat CSVs whose AU12 carries the
    label: each person shows condition 0 and 1."""
    rng = np.random.default_rng(0)
    tables, of, pf = tmp_path / "tables", tmp_path / "of", tmp_path / "pf"
    for d in (tables, of, pf):
        d.mkdir()
    raw = pd.read_csv(OPENFACE_TEST, skipinitialspace=True)
    raw.columns = [c.strip() for c in raw.columns]
    with open(FEAT_TEST, newline="") as f:
        header, row = list(csv.reader(f))
    labels = []
    for p in range(n_people):
        for y in (0, 1):
            vid = f"p{p}_c{y}"
            labels.append((vid, f"c{y}", f"{p:03d}"))
            n = 40
            df = pd.DataFrame(rng.integers(0, 16, (n, 4)), columns=[f"tok_{k + 1}" for k in range(4)])
            df.insert(0, "frame", np.arange(n))
            df.insert(1, "timestamp", np.arange(n) / 25.0)
            df["success"], df["face_id"] = 1, 0
            write_table(df, tables / f"{vid}.parquet")
            if vid == "p7_c1":
                continue  # a table without any baseline CSV
            o = raw.copy()
            o["AU12_r"] = np.clip(rng.normal(0.3 + 1.5 * y, 0.3, len(o)), 0, 5)
            o.to_csv(of / f"{vid}.csv", index=False)
            feat = pd.DataFrame([row] * n, columns=header)
            feat["AU12"] = np.clip(rng.normal(0.2 + 0.6 * y, 0.1, n), 0, 1)
            feat.to_csv(pf / f"{vid}.csv", index=False)
    pd.DataFrame(labels, columns=["video", "condition", "person"]).to_csv(tmp_path / "labels.csv", index=False)
    return tables, of, pf


def test_evaluate_task_reports_baselines_beside_the_tokens(tmp_path):
    tables, of, pf = _task(tmp_path)
    out = tmp_path / "report"
    args = ["evaluate-task", tables, "--labels", tmp_path / "labels.csv", "--target", "condition",
            "--group", "person", "--folds", "2", "--seeds", "1", "-o", out]
    res = run_dfe(*args, "--baseline", f"openface:{of}", "--baseline", f"pyfeat:{pf}")
    assert res.returncode == 0, res.stderr
    comp = pd.read_csv(out / "comparison.csv").set_index("features")
    of_row, pf_row = "openface AU functionals (of)", "pyfeat AU functionals (pf)"
    assert {of_row, pf_row, "dfe tokens (BoW)"} <= set(comp.index)
    assert comp.loc[of_row, "macro_f1_mean"] >= 0.9 and comp.loc[pf_row, "macro_f1_mean"] >= 0.9
    assert comp.loc["dfe tokens (BoW)", "macro_f1_mean"] < 0.8  # random tokens
    # the same paired CIs as every baseline: dfe minus the OpenFace row is clearly negative here
    assert comp.loc[of_row, "ci95_high"] < 0
    preds = pd.read_csv(out / "predictions.csv")
    assert "p7_c1" not in set(preds["video"]) and preds.groupby("features").size().nunique() == 1
    report = (out / "comparison.md").read_text()
    sentence = [line for line in report.splitlines() if f"openface:{of}" in line]
    assert len(sentence) == 1 and "'p7_c1'" in sentence[0] and "1 of 16 tables" in sentence[0]
    assert of_row in res.stdout


def test_baseline_errors_are_one_sentence(tmp_path):
    tables, of, pf = _task(tmp_path, n_people=3)
    base = ["evaluate-task", tables, "--labels", tmp_path / "labels.csv", "--target", "condition", "-o", tmp_path / "r"]
    empty = tmp_path / "empty"
    empty.mkdir()
    for extra, message in (
            (["--baseline", f"openfacex:{of}"], "give openface:DIR or pyfeat:DIR"),
            (["--baseline", f"openface:{tmp_path / 'nowhere'}"], "does not exist"),
            (["--baseline", f"openface:{empty}"], "no file matches any of the 6 tables"),
            (["--baseline", f"openface:{pf}"], "not an OpenFace CSV"),  # py-feat files given as OpenFace
            (["--baseline", f"pyfeat:{pf}", "--window", "1"], "cannot be combined with --window")):
        res = run_dfe(*base, *extra)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, (extra, res.stderr)
