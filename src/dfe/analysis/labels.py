"""Files researchers bring beside their tables: labels and per-video features.

One rule for every command: ids and groups are text. ``001`` stays ``001`` (pandas would read it as
the number 1 and it would then match no table or merge two people), and an empty cell is missing.
A column whose every value is a number becomes numeric only where a command asks for it (a target
to regress, feature values).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def read_labels(path: str | Path) -> pd.DataFrame:
    """A labels CSV with every column as text (empty cells missing). Raises ValueError naming the
    file when it cannot be read or holds no rows."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"labels file {path} does not exist")
    try:
        lab = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise ValueError(f"labels file {path} is empty: it needs a header row (id, target, ...) and one row per video") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise ValueError(f"labels file {path} could not be read as CSV ({str(e).splitlines()[0]})") from None
    if lab.empty:
        raise ValueError(f"labels file {path} has a header but no rows")
    if len(lab.columns) < 2:
        raise ValueError(f"labels file {path} has one column: it needs an id column and a label column")
    lab.columns = [str(c).strip() for c in lab.columns]
    return lab


def require_columns(lab: pd.DataFrame, columns: list[str], path: str | Path) -> None:
    for col in columns:
        if col not in lab.columns:
            raise ValueError(f"labels file {path} has no column {col!r} (columns: {', '.join(lab.columns)})")


def numeric_if_numbers(values: pd.Series) -> pd.Series:
    """The column as numbers when every present value is one; else unchanged (text)."""
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers if numbers.notna().sum() == values.notna().sum() else values


def groups_for(videos: pd.Series, lab: pd.DataFrame, group_column: str, path: str | Path) -> pd.Series:
    """Each video's group (person) from the labels (first column = video id). Raises ValueError,
    naming the file and an example, when a video has no row or no group: a silent fallback to one
    group per video would turn a person-held-out split into a per-video one."""
    require_columns(lab, [group_column], path)
    by_id = lab.set_index(lab.columns[0])[group_column]
    by_id = by_id[~by_id.index.duplicated()]
    groups = videos.astype(str).map(by_id)
    missing = sorted(set(videos[groups.isna()].astype(str)))
    if missing:
        raise ValueError(f"labels file {path} gives no {group_column!r} for {len(missing)} of {videos.nunique()} videos "
                         f"(e.g. {missing[0]!r}; ids are compared as text, so '1' does not match '001'): "
                         f"add them or leave out --group")
    return groups


def read_video_features(path: str | Path) -> pd.DataFrame:
    """A per-video feature CSV (first column = video id, read as text; the other columns numbers)."""
    lab = read_labels(path)
    key = lab.columns[0]
    out = lab.copy()
    for col in lab.columns[1:]:
        out[col] = pd.to_numeric(lab[col], errors="coerce")
    bad = [c for c in lab.columns[1:] if out[c].isna().sum() > lab[c].isna().sum()]
    if bad:
        raise ValueError(f"features file {path}: column {bad[0]!r} holds values that are not numbers")
    out[key] = lab[key].astype(str)
    return out


def group_codes(videos, groups) -> np.ndarray:
    """Groups renamed 0, 1, ... in the order of their first video id: a seeded shuffle of these
    depends on which videos a group holds, not on how its id is written ('61' or '061')."""
    first = pd.Series(np.asarray(videos, dtype=str)).groupby(np.asarray(groups, dtype=str)).min()
    rank = {g: i for i, g in enumerate(first.sort_values(kind="stable").index)}
    return np.array([rank[str(g)] for g in groups])
