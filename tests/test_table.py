"""The per-frame table: column helpers, atomic writes, finding and loading tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dfe.table import (find_tables, geometry_psi_array, identity_columns, load_tables, psi_array, psi_columns,
                       read_table, strength_columns, token_columns, video_id, write_table)


def frame_table(n=3, d=12, success=(1, 0, 1)):
    psi = np.arange(n * d, dtype=np.float32).reshape(n, d)
    df = pd.DataFrame({"frame": range(n), "success": list(success), **{f"psi_{i}": psi[:, i] for i in range(d)}})
    return df, psi


def test_columns_are_ordered_numerically():
    df, psi = frame_table()
    shuffled = df[["success", "frame"] + list(reversed(psi_columns(df)))]
    assert psi_columns(shuffled) == [f"psi_{i}" for i in range(12)]  # psi_10 after psi_9
    np.testing.assert_array_equal(psi_array(shuffled), psi[[0, 2]])
    assert psi_array(shuffled, successful_only=False).shape == (3, 12)
    df["tok_10"], df["tok_2"], df["tok_1"], df["tok_x"] = 5, 7, 9, 0
    df["strength_2"], df["strength_1"], df["strength_1b"] = 0.5, 0.25, 0.0
    assert token_columns(df) == ["tok_1", "tok_2", "tok_10"]
    assert strength_columns(df) == ["strength_1", "strength_2"]
    assert psi_columns(df) == [f"psi_{i}" for i in range(12)]  # tok_10 is no psi column
    assert identity_columns(3) == ["id_0", "id_1", "id_2"]


def test_psi_array_is_geometry_psi():
    df, psi = frame_table()
    df["flame_0"] = 1.0
    np.testing.assert_array_equal(geometry_psi_array(df), psi[[0, 2]])  # psi_* only, never flame_*
    np.testing.assert_array_equal(psi_array(df), geometry_psi_array(df))  # the README's name
    with pytest.raises(ValueError, match="no geometry psi columns"):
        psi_array(df[["frame", "success", "flame_0"]])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_write_read_round_trip_and_atomic(tmp_path, suffix):
    df, _ = frame_table()
    path = write_table(df, tmp_path / "sub" / f"clip{suffix}")
    back = read_table(path)
    np.testing.assert_allclose(psi_array(back), psi_array(df))
    assert list(back.columns) == list(df.columns)  # no index column added
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left
    with pytest.raises(ValueError, match="not a dfe table"):
        read_table(tmp_path / "x.txt")


def test_find_and_load_tables(tmp_path):
    df, _ = frame_table()
    write_table(df, tmp_path / "a" / "one.parquet")
    write_table(df, tmp_path / "b" / "two.csv")
    (tmp_path / "a" / ".hidden.parquet").write_bytes(b"")
    (tmp_path / "a" / "report.json").write_text("{}")
    found = find_tables([tmp_path])
    assert [p.name for p in found] == ["one.parquet", "two.csv"]
    both = load_tables([tmp_path])
    assert list(both["video"].unique()) == ["one", "two"] and len(both) == 6
    assert video_id(tmp_path / "x" / "clip.parquet") == "clip"
    with pytest.raises(FileNotFoundError):
        find_tables([tmp_path / "nothing"])


def test_blendshape_and_landmark_blocks():
    from dfe.table import BLENDSHAPE_COLUMNS, LANDMARK_COLUMNS, blendshapes_array, landmarks_array

    df = pd.DataFrame(np.arange(2 * 52).reshape(2, 52), columns=BLENDSHAPE_COLUMNS)
    df["success"] = [1, 0]
    np.testing.assert_array_equal(blendshapes_array(df), np.arange(52)[None])
    only = df.drop(columns=["success"])  # exactly the 52 columns
    assert blendshapes_array(only, successful_only=False).shape == (2, 52)
    assert blendshapes_array(df, successful_only=False).shape == (2, 52)
    with pytest.raises(ValueError, match="no blendshape"):
        blendshapes_array(df.drop(columns=["jawOpen"]))
    lm = pd.DataFrame(np.arange(1434)[None].repeat(2, 0), columns=LANDMARK_COLUMNS)
    out = landmarks_array(lm)
    assert out.shape == (2, 478, 3) and out[1, 2].tolist() == [6, 7, 8]


def test_written_files_get_the_usual_permissions(tmp_path):
    """Tables and report.json are readable by others as a plain open() would make them (mkstemp
    alone gives 0600)."""
    import os

    import pandas as pd

    from dfe.runs.manifest import Manifest
    from dfe.table import write_table

    umask = os.umask(0o022)
    try:
        path = write_table(pd.DataFrame({"frame": [0], "success": [1]}), tmp_path / "t.parquet")
        manifest = Manifest(tmp_path)
        report = manifest.write_report()
        manifest.close()
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644 and report.stat().st_mode & 0o777 == 0o644
