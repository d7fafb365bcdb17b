"""The per-frame table: one row per frame and face, OpenFace-style, shared by every stage.

Columns (in order):
``file, frame, timestamp, face_id, success, presence, reason, bbox_x, bbox_y, bbox_w, bbox_h,
pose_yaw, pose_pitch, pose_roll, pose_tx, pose_ty, pose_tz, pose_scale, align_rmse,
<52 blendshapes under MediaPipe's names>, psi_kind, psi_version (absent in dfe 0.3 and earlier tables: version 1),
neutral_source, neutral_frames,
AU01_r .. AU45_r, AU01_c .. AU45_c (OpenFace's action units from geometry, :mod:`dfe.extraction.action_units`),
AU01_r_blendshapes .. (the same units from the blendshapes), gaze_0_x .. gaze_angle_y
(:mod:`dfe.extraction.gaze`; the last three groups are absent in tables before dfe 0.4),
lm_0 .. lm_1433 (478 landmarks x, y, z normalised), id_0 .. id_{k-1} (identity coefficients of the
face model fit; absent in dfe 0.1 tables), psi_0 .. psi_{D-1}``
and after ``dfe encode``: ``tok_1 .. tok_K, recon_error, strength_1 .. strength_K``.

``success`` is 1 where a face was found; ``presence`` is 1.0 on those rows and 0.0 on the others,
always (MediaPipe Tasks gives no presence score; the column is kept for the readers of dfe 0.1's
tables); ``reason`` says why a row has no face (``no face``, ``undecodable frame``).

In memory the blocks psi, lm and id are wide columns (``psi_0 ..``); on disk CSV keeps them wide
and Parquet stores each as one list column (the layout below). :func:`geometry_psi_array` (the
README's :func:`psi_array`) returns geometry psi as (n, 1404); the psi of the other kinds
(blendshapes, FLAME) is read by :func:`dfe.tokens.tables.table_psi`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

N_LANDMARKS = 478

# MediaPipe's 52 blendshape categories, in its output order (ARKit names; index 0 is _neutral).
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)


FRAME_COLUMNS = ["file", "frame", "timestamp"]  # where a row comes from
DETECTION_COLUMNS = ["face_id", "success", "presence", "reason"]  # whether a face was found (presence: 1.0 or 0.0)
BBOX_COLUMNS = ["bbox_x", "bbox_y", "bbox_w", "bbox_h"]  # the face's box, original pixels
POSE_COLUMNS = ["pose_yaw", "pose_pitch", "pose_roll", "pose_tx", "pose_ty", "pose_tz", "pose_scale"]
META_COLUMNS = FRAME_COLUMNS + DETECTION_COLUMNS + BBOX_COLUMNS + POSE_COLUMNS + ["align_rmse"]
RECON_ERROR_COLUMN = "recon_error"  # written by dfe encode beside tok_* and strength_*
BLENDSHAPE_COLUMNS = list(BLENDSHAPE_NAMES)
LANDMARK_COLUMNS = [f"lm_{i}" for i in range(N_LANDMARKS * 3)]
TABLE_SUFFIXES = {".parquet", ".csv"}

# OpenFace 2.2's action units: intensities (_r) for 17 units, presence (_c) for the same and AU28.
OPENFACE_AU_INTENSITY = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14",
                         "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45"]
OPENFACE_AU_PRESENCE = OPENFACE_AU_INTENSITY[:-1] + ["AU28", "AU45"]
AU_INTENSITY_COLUMNS = [f"{au}_r" for au in OPENFACE_AU_INTENSITY]  # geometry source, cm (dfe.extraction.units scale)
AU_PRESENCE_COLUMNS = [f"{au}_c" for au in OPENFACE_AU_PRESENCE]  # 0/1 (NaN where a unit is not measured)
AU_BLENDSHAPE_COLUMNS = [f"{au}_r_blendshapes" for au in OPENFACE_AU_INTENSITY]  # blendshape source, same scale
GAZE_COLUMNS = ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
FRAME_AU_GAZE_COLUMNS = AU_INTENSITY_COLUMNS + AU_PRESENCE_COLUMNS + AU_BLENDSHAPE_COLUMNS + GAZE_COLUMNS


def _version(df: pd.DataFrame, column: str, what: str, name: str) -> int:
    """The one value of a version column (1 when the table has none), or ValueError with one sentence."""
    if column not in df.columns:
        return 1
    found = sorted({int(v) for v in pd.to_numeric(df[column], errors="coerce").dropna()})
    if len(found) > 1:
        raise ValueError(f"{name} mixes {what} versions {' and '.join(map(str, found))}: "
                         "re-extract its inputs with one dfe version")
    return found[0] if found else 1


def psi_version(df: pd.DataFrame, name: str = "the table") -> int:
    """The psi version of a table (``psi_version`` column; tables written by dfe 0.3 and earlier have none:
    version 1). Raises ValueError with one sentence when the table mixes versions."""
    return _version(df, "psi_version", "psi", name)


def au_version(df: pd.DataFrame, name: str = "the table") -> int:
    """How a table's ``AU*_r`` columns were made (``au_version`` column; tables written by dfe 0.4-0.6
    have none: version 1, ICT's shapes; 2 = measured unit responses, dfe 0.7). Raises ValueError with
    one sentence when the table mixes versions."""
    return _version(df, "au_version", "action-unit", name)


def file_psi_version(path: str | Path) -> int:
    """The psi version of a table file, reading that one column only (see :func:`psi_version`)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        if "psi_version" not in pq.read_schema(path).names:
            return 1
        return psi_version(pq.read_table(path, columns=["psi_version"]).to_pandas(), path.name)
    df = pd.read_csv(path, usecols=lambda c: c == "psi_version")
    return psi_version(df, path.name)


def tables_by_version(versions: dict[str, int]) -> dict[int, list[str]]:
    """Table names (name -> version) grouped by version, oldest version first."""
    by_version: dict[int, list[str]] = {}
    for name, v in versions.items():
        by_version.setdefault(int(v), []).append(name)
    return dict(sorted(by_version.items()))


def some_names(names: list[str], shown: int = 3) -> str:
    """The first ``shown`` names and how many more: ``a, b, c and 2 more``."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def check_psi_versions(versions: dict[str, int], what: str = "these tables") -> int:
    """The one psi version of several tables (name -> version), or ValueError with one sentence
    naming which tables are which version."""
    by_version = tables_by_version(versions)
    if len(by_version) > 1:
        parts = [f"{some_names(names)} {'is' if len(names) == 1 else 'are'} psi version {v}"
                 for v, names in by_version.items()]
        raise ValueError(f"{what} mix psi made two ways ({'; '.join(parts)}): re-extract the older ones "
                         "with this dfe (psi version 1 is dfe 0.3 and earlier)")
    return next(iter(by_version), 1)


def psi_column_names(n: int, kind: str = "geometry") -> list[str]:
    """The names of ``n`` psi columns: ``psi_0..`` (geometry, cm) or ``flame_0..`` (FLAME parameters)."""
    prefix = "psi_" if kind == "geometry" else "flame_"
    return [f"{prefix}{i}" for i in range(n)]


def token_column_names(levels: int) -> list[str]:
    """``tok_1 .. tok_K``: a frame's tokens, coarse to fine."""
    return [f"tok_{k + 1}" for k in range(levels)]


def strength_column_names(levels: int) -> list[str]:
    """``strength_1 .. strength_K``: how strongly each token's code shows (cm)."""
    return [f"strength_{k + 1}" for k in range(levels)]


def identity_columns(k: int) -> list[str]:
    """Names of the identity coefficient columns ``id_0 .. id_{k-1}`` (see :mod:`dfe.extraction.identity`)."""
    return [f"id_{i}" for i in range(k)]


def _wide_names(columns, prefix: str) -> list[str]:
    """The columns ``<prefix><number>`` among ``columns``, in number order."""
    columns = columns.tolist() if hasattr(columns, "tolist") else columns  # one conversion, not one per name
    names = [c for c in columns if c.startswith(prefix) and c[len(prefix):].isdigit()]
    return sorted(names, key=lambda c: int(c[len(prefix):]))


def psi_columns(df: pd.DataFrame) -> list[str]:
    """``psi_0 .. psi_{D-1}`` (geometry psi), in order."""
    return _wide_names(df.columns, "psi_")


def token_columns(df: pd.DataFrame) -> list[str]:
    """``tok_1 .. tok_K`` (written by ``dfe encode``), in level order."""
    return _wide_names(df.columns, "tok_")


def strength_columns(df: pd.DataFrame) -> list[str]:
    """``strength_1 .. strength_K`` (written by ``dfe encode``), in level order."""
    return _wide_names(df.columns, "strength_")


def _block(df: pd.DataFrame, cols: list[str], dtype, successful_only: bool, missing: str) -> np.ndarray:
    if not cols:
        raise ValueError(missing)
    if successful_only:
        df = df[df["success"] == 1]
    return df[cols].to_numpy(dtype=dtype)


def geometry_psi_array(df: pd.DataFrame, successful_only: bool = True) -> np.ndarray:
    """Geometry psi (the ``psi_0 ..`` columns, cm) of a table as an (n, 1404) float32 array,
    successful rows only by default. Raises ValueError when the table has none (FLAME tables keep
    their psi in ``flame_*`` columns)."""
    return _block(df, psi_columns(df), np.float32, successful_only,
                  "table has no geometry psi columns (psi_0 ...): was it written by `dfe extract`?")


def psi_array(df: pd.DataFrame, successful_only: bool = True) -> np.ndarray:
    """:func:`geometry_psi_array` under the name dfe's README has used since 0.3."""
    return geometry_psi_array(df, successful_only)


def blendshapes_array(df: pd.DataFrame, successful_only: bool = True) -> np.ndarray:
    """The 52 blendshape scores as an (n, 52) float32 array."""
    cols = BLENDSHAPE_COLUMNS if set(BLENDSHAPE_COLUMNS) <= set(df.columns) else []
    return _block(df, cols, np.float32, successful_only, "table has no blendshape columns")


def has_action_units(df: pd.DataFrame) -> bool:
    """Whether a table carries the per-frame action units and gaze (dfe 0.4 extraction); older
    tables read as they are and get them from :func:`dfe.extraction.openface.add_action_units`."""
    return set(AU_INTENSITY_COLUMNS) <= set(df.columns)


def landmarks_array(df: pd.DataFrame) -> np.ndarray:
    """Normalised landmarks as (n, 478, 3)."""
    return df[LANDMARK_COLUMNS].to_numpy(dtype=np.float32).reshape(len(df), N_LANDMARKS, 3)


# Parquet layout (dfe 0.3): the wide blocks psi_*, lm_* and id_* are stored as one fixed-size list
# column each (psi, lm, id: float32), other measurements as float32, timestamps as float64, zstd.
# psi is rounded to PSI_STEP cm and landmarks to LM_STEP (normalised units), far below the landmark
# noise, because rounded floats compress 2-3x better. CSV stays wide (one column per value).
LIST_BLOCKS = {"psi": "psi_", "lm": "lm_", "id": "id_"}
PSI_STEP = 1e-3  # cm (10 micrometres)
LM_STEP = 1e-4  # normalised image units (0.06 px on a 640 px frame)
ROUNDING_STEPS = {"psi": PSI_STEP, "lm": LM_STEP}
KEEP_FLOAT64 = {"timestamp", "onset", "apex", "offset", "duration"}


def to_arrow(df: pd.DataFrame):
    """The compact Arrow table of a per-frame DataFrame (see the layout above)."""
    import pyarrow as pa

    blocks = {name: _wide_names(df.columns, prefix) for name, prefix in LIST_BLOCKS.items()}
    in_blocks = {c for names in blocks.values() for c in names}
    arrays, names = [], []
    for col in df.columns.tolist():
        if col in in_blocks:
            continue
        values = df[col]
        if pd.api.types.is_float_dtype(values) and col not in KEEP_FLOAT64:
            values = values.astype(np.float32)
        arrays.append(pa.array(values, from_pandas=True))
        names.append(col)
    for name, cols in blocks.items():
        if not cols:
            continue
        block = df[cols].to_numpy(np.float32)
        if name in ROUNDING_STEPS:
            step = ROUNDING_STEPS[name]
            block = (np.round(block / step) * step).astype(np.float32)
        arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(block.ravel(), pa.float32()), len(cols)))
        names.append(name)
    block_of = {c: b for b, cols in blocks.items() for c in cols}
    order, placed = [], set()  # the DataFrame's column order, each block by its name, to restore it on read
    for col in df.columns.tolist():
        block = block_of.get(col)
        if block is None:
            order.append(col)
        elif block not in placed:
            order.append("@" + block)
            placed.add(block)
    meta = {b"dfe.layout": b"lists-v1", b"dfe.psi_step_cm": str(PSI_STEP).encode(), b"dfe.lm_step": str(LM_STEP).encode(),
            b"dfe.order": json.dumps(order).encode()}
    return pa.Table.from_arrays(arrays, names=names).replace_schema_metadata(meta)


def _expand(table) -> pd.DataFrame:
    """Arrow table (compact or dfe 0.2 wide) -> DataFrame with wide psi_*/lm_*/id_* columns."""
    import pyarrow as pa

    lists = [f.name for f in table.schema if pa.types.is_fixed_size_list(f.type) and f.name in LIST_BLOCKS]
    df = table.drop(lists).to_pandas()
    if not lists:
        return df
    parts = {name: pd.DataFrame(list_array(table, name), index=df.index,
                                columns=[f"{LIST_BLOCKS[name]}{i}" for i in range(table.column(name).type.list_size)])
             for name in lists}
    order = json.loads((table.schema.metadata or {}).get(b"dfe.order", b"[]")) or list(df.columns) + ["@" + n for n in lists]
    pieces, run = [], []  # blocks in their places; the plain columns between them in runs, one frame each
    for c in order:
        if c.startswith("@") and c[1:] in parts:
            pieces += [df[run]] if run else []
            pieces.append(parts[c[1:]])
            run = []
        elif c in df.columns:
            run.append(c)
    pieces += [df[run]] if run else []
    return pd.concat(pieces, axis=1)


def list_array(table, name: str) -> np.ndarray:
    """(n, D) float32 of one list column of an Arrow table, without pandas."""
    col = table.column(name).combine_chunks()
    width = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), width).astype(np.float32, copy=False)


def read_arrays(path: str | Path, names=("psi",), successful_only: bool = False) -> dict[str, np.ndarray]:
    """The blocks ``names`` (psi, lm, id) of a table as (n, D) float32 arrays, read straight from
    Parquet (compact or old wide tables; CSV through pandas)."""
    path = Path(path)
    if path.suffix != ".parquet":
        df = read_table(path)
        if successful_only:
            df = df[df["success"] == 1]
        return {n: df[_wide_names(df.columns, LIST_BLOCKS[n])].to_numpy(np.float32) for n in names}
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    out = {}
    wanted = ["success"] if successful_only else []
    compact = [n for n in names if n in schema.names]
    table = pq.read_table(path, columns=wanted + compact)
    mask = pc.equal(table.column("success"), 1) if successful_only else None
    if mask is not None:
        table = table.filter(mask)
    for n in compact:
        out[n] = list_array(table, n)
    for n in names:
        if n in out:
            continue
        cols = _wide_names(schema.names, LIST_BLOCKS[n])
        wide = pq.read_table(path, columns=wanted + cols)
        if mask is not None:
            wide = wide.filter(pc.equal(wide.column("success"), 1))
        out[n] = np.stack([wide.column(c).to_numpy() for c in cols], 1).astype(np.float32) if cols else np.zeros((len(wide), 0), np.float32)
    return out


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write atomically (temp file + rename): a crash never leaves a half-written table. Parquet
    is written in the compact layout; CSV wide, as OpenFace users expect."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            import pyarrow.parquet as pq

            pq.write_table(to_arrow(df), tmp, compression="zstd")
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def publish(tmp: str | Path, path: str | Path) -> None:
    """Move a finished temp file into place with the permissions a plain ``open`` would give
    (mkstemp makes files readable by their owner alone)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A per-frame table as a DataFrame with wide columns, whatever its layout (dfe 0.2 wide Parquet
    tables and CSV are read as they are). ``columns``: read only these (Parquet: list blocks by name,
    e.g. ``["success", "psi"]``)."""
    path = Path(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, usecols=columns)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return _expand(pq.read_table(path, columns=columns))
    raise ValueError(f"{path}: not a dfe table (.parquet or .csv)")


def table_column_names(path: str | Path) -> list[str]:
    """The columns a table file holds (Parquet: its list blocks by name), without reading its rows."""
    path = Path(path)
    if path.suffix == ".csv":
        return list(pd.read_csv(path, nrows=0).columns)
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


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


def window_id(video: str, k: int) -> str:
    """The id of window ``k`` of a video (``dfe evaluate-task --window``): ``video@k``."""
    return f"{video}@{int(k)}"


def window_video(item_id: str) -> str:
    """The video a window id belongs to (a plain video id is returned as it is)."""
    head, _, tail = str(item_id).rpartition("@")
    return head if head and tail.isdigit() else str(item_id)


def load_tables(paths: list[str | Path]) -> pd.DataFrame:
    """Concatenate tables, adding a ``video`` column (the table's stem)."""
    frames, versions = [], {}
    for p in find_tables(paths):
        df = read_table(p)
        versions[Path(p).name] = psi_version(df, Path(p).name)
        frames.append(pd.concat([pd.Series(video_id(p), index=df.index, name="video"), df], axis=1))
    check_psi_versions(versions)
    return pd.concat(frames, ignore_index=True)
