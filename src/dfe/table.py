"""The per-frame table: one row per frame and face, OpenFace-style, shared by every stage.

Columns (in order):
``file, frame, timestamp, face_id, success, presence, reason, bbox_x, bbox_y, bbox_w, bbox_h,
pose_yaw, pose_pitch, pose_roll, pose_tx, pose_ty, pose_tz, pose_scale, align_rmse,
<52 blendshapes under MediaPipe's names>, psi_kind, neutral_source, neutral_frames,
lm_0 .. lm_1433 (478 landmarks x, y, z normalised), id_0 .. id_{k-1} (identity coefficients of the
face model fit; absent in dfe 0.1 tables), psi_0 .. psi_{D-1}``
and after ``dfe encode``: ``tok_1 .. tok_K, recon_error``.

Wide columns keep the CSV and Parquet files alike; :func:`psi_array` returns psi as (n, D).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from dfe.face import BLENDSHAPE_NAMES, N_LANDMARKS

META_COLUMNS = ["file", "frame", "timestamp", "face_id", "success", "presence", "reason",
                "bbox_x", "bbox_y", "bbox_w", "bbox_h",
                "pose_yaw", "pose_pitch", "pose_roll", "pose_tx", "pose_ty", "pose_tz", "pose_scale",
                "align_rmse"]
BLENDSHAPE_COLUMNS = list(BLENDSHAPE_NAMES)
LANDMARK_COLUMNS = [f"lm_{i}" for i in range(N_LANDMARKS * 3)]
TABLE_SUFFIXES = {".parquet", ".csv"}


def identity_columns(k: int) -> list[str]:
    """Names of the identity coefficient columns ``id_0 .. id_{k-1}`` (see :mod:`dfe.identity`)."""
    return [f"id_{i}" for i in range(k)]


def psi_columns(df: pd.DataFrame) -> list[str]:
    cols = [c for c in df.columns if c.startswith("psi_") and c[4:].isdigit()]
    return sorted(cols, key=lambda c: int(c[4:]))


def token_columns(df: pd.DataFrame) -> list[str]:
    cols = [c for c in df.columns if re.fullmatch(r"tok_\d+", c)]
    return sorted(cols, key=lambda c: int(c[4:]))


def _block(df: pd.DataFrame, cols: list[str], dtype, successful_only: bool, missing: str) -> np.ndarray:
    if not cols:
        raise ValueError(missing)
    if successful_only:
        df = df[df["success"] == 1]
    return df[cols].to_numpy(dtype=dtype)


def psi_array(df: pd.DataFrame, successful_only: bool = True) -> np.ndarray:
    """psi of a table as an (n, D) float32 array (successful rows only by default)."""
    return _block(df, psi_columns(df), np.float32, successful_only,
                  "table has no psi columns (psi_0 ...): was it written by `dfe extract`?")


def tokens_array(df: pd.DataFrame, successful_only: bool = True) -> np.ndarray:
    """Tokens of a table as an (n, K) int array; raises if the table was not encoded."""
    return _block(df, token_columns(df), np.int64, successful_only,
                  "table has no token columns (tok_1 ...): run `dfe encode` first")


def blendshapes_array(df: pd.DataFrame, successful_only: bool = True) -> np.ndarray:
    """The 52 blendshape scores as an (n, 52) float32 array."""
    cols = BLENDSHAPE_COLUMNS if set(BLENDSHAPE_COLUMNS) <= set(df.columns) else []
    return _block(df, cols, np.float32, successful_only, "table has no blendshape columns")


def landmarks_array(df: pd.DataFrame) -> np.ndarray:
    """Normalised landmarks as (n, 478, 3)."""
    return df[LANDMARK_COLUMNS].to_numpy(dtype=np.float32).reshape(len(df), N_LANDMARKS, 3)


def with_array(df: pd.DataFrame, prefix: str, values: np.ndarray) -> pd.DataFrame:
    """Return df with wide columns ``prefix0..`` set from an (n, d) array (replacing old ones)."""
    names = [f"{prefix}{i}" for i in range(values.shape[1])]
    old = [c for c in df.columns if re.fullmatch(re.escape(prefix) + r"\d+", c)]
    block = pd.DataFrame(values, columns=names, index=df.index)
    return pd.concat([df.drop(columns=old), block], axis=1)


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write atomically (temp file + rename): a crash never leaves a half-written table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    raise ValueError(f"{path}: not a dfe table (.parquet or .csv)")


def find_tables(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders into per-frame tables (report files and hidden files skipped)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix in TABLE_SUFFIXES and not f.name.startswith("."))
        elif p.is_file():
            out.append(p)
        else:
            import glob

            out += sorted(Path(f) for f in glob.glob(str(item), recursive=True) if Path(f).suffix in TABLE_SUFFIXES)
    if not out:
        raise FileNotFoundError(f"no tables (.parquet or .csv) found in: {', '.join(map(str, inputs))}")
    return out


def video_id(path: str | Path) -> str:
    """The id a table is known by in label files: its file stem."""
    return Path(path).stem


def load_tables(paths: list[str | Path]) -> pd.DataFrame:
    """Concatenate tables, adding a ``video`` column (the table's stem)."""
    frames = []
    for p in find_tables(paths):
        df = read_table(p)
        df.insert(0, "video", video_id(p))
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
