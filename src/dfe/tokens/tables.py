"""The tokenizer meets the per-frame tables: which columns are psi, fitting on table folders, encoding a table."""

from __future__ import annotations

import numpy as np
from dfe.extraction.expression import PSI_KINDS
from dfe.table import BLENDSHAPE_COLUMNS, RECON_ERROR_COLUMN, blendshapes_array, check_psi_versions, file_psi_version, find_tables, geometry_psi_array, psi_column_names, psi_version, read_arrays, read_table, strength_column_names, token_column_names, video_id
from dfe.tokens.config import TokenizerConfig
from dfe.tokens.tokenizer import Tokenizer


def flame_columns(psi_kind: str) -> list[str]:
    """``flame_0 ..`` columns of a FLAME psi kind."""
    return psi_column_names(PSI_KINDS[psi_kind], "flame")


def table_psi(df, psi_kind: str = "geometry") -> np.ndarray:
    """psi of the successful rows of a per-frame table, for one psi kind."""
    if psi_kind == "geometry":
        return geometry_psi_array(df)
    if psi_kind == "blendshapes":
        return blendshapes_array(df)
    if psi_kind in ("flame", "flame+eyelids"):
        cols = flame_columns(psi_kind)
        if not set(cols) <= set(df.columns):
            raise ValueError(f"table has no {cols[0]}..{cols[-1]} columns (FLAME parameters of psi kind {psi_kind}): "
                             "import them with `dfe import-flame`")
        return df.loc[df["success"] == 1, cols].to_numpy(np.float32)
    raise ValueError(f"unknown psi kind {psi_kind!r}; use one of {', '.join(PSI_KINDS)}")


def kind_array(path, psi_kind: str = "geometry") -> np.ndarray:
    """:func:`table_psi` of one table file, reading only the columns that psi kind needs."""
    if psi_kind == "geometry":
        return read_arrays(path, ["psi"], successful_only=True)["psi"]
    if psi_kind not in PSI_KINDS:
        raise ValueError(f"unknown psi kind {psi_kind!r}; use one of {', '.join(PSI_KINDS)}")
    cols = BLENDSHAPE_COLUMNS if psi_kind == "blendshapes" else flame_columns(psi_kind)
    try:
        df = read_table(path, columns=["success", *cols])
    except (KeyError, ValueError):  # missing columns: table_psi says which, in one sentence
        df = read_table(path, columns=["success"])
    return table_psi(df, psi_kind)


def sample_sizes(counts: list[int], max_frames: int | None) -> list[int]:
    """Frames to take from each table: all, or ``max_frames`` shared in proportion to each table's
    frames (stratified by video; largest remainders get the leftover frames)."""
    total = sum(counts)
    if not max_frames or total <= max_frames:
        return list(counts)
    exact = np.asarray(counts, dtype=float) * max_frames / total
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take))[: max_frames - int(take.sum())]:
        take[i] += 1
    return take.tolist()


def fit_tables(paths, psi_kind: str = "geometry", progress: bool = True, max_frames: int | None = None,
               device: str = "cpu", config: TokenizerConfig | None = None, **knobs) -> Tokenizer:
    """Train a tokenizer on the successful rows of per-frame tables, held out by video. Tables are
    read one at a time and only their psi is kept; ``max_frames`` caps the frames held in memory
    (a random sample, stratified by video, drawn with the fit's seed), so corpora larger than memory
    can be fitted. ``config`` and ``knobs``: as in :meth:`Tokenizer.fit`."""
    tables = find_tables(paths)
    version = check_psi_versions({p.name: file_psi_version(p) for p in tables}) if psi_kind == "geometry" else None
    counts = [int((read_table(p, columns=["success"])["success"] == 1).sum()) for p in tables]
    if sum(counts) < 10:
        raise ValueError(f"only {sum(counts)} frames with a face in these tables; need at least 10")
    take = sample_sizes(counts, max_frames)
    rng = np.random.default_rng(knobs.get("seed", (config or TokenizerConfig()).seed))
    parts, geo_parts, groups = [], [], []
    for path, n, k in zip(tables, counts, take):
        if k == 0:
            continue
        rows = np.sort(rng.choice(n, k, replace=False)) if k < n else slice(None)
        parts.append(kind_array(path, psi_kind)[rows])
        if psi_kind == "blendshapes":  # the rig that draws blendshape codes on the face needs geometry too
            geo = kind_array(path, "geometry")
            if geo.shape == (n, 1404):
                geo_parts.append(geo[rows])
        groups += [video_id(path)] * (k if k < n else n)
    psi = np.concatenate(parts)
    data = {"tables": len(tables), "frames": int(sum(counts)), "frames_used": int(len(psi)),
            "videos": sorted(map(video_id, tables))[:200]}
    if version is not None:
        data["psi_version"] = version
    tok = Tokenizer.fit(psi, groups=np.asarray(groups), config=config, progress=progress, data_summary=data,
                        psi_kind=psi_kind, device=device, **knobs)
    if psi_kind == "blendshapes" and geo_parts and sum(map(len, geo_parts)) == len(psi):
        tok.extras["rig"] = blendshape_geometry_map(psi, np.concatenate(geo_parts))
    return tok


def encode_table(df, tok: Tokenizer):
    """The table with ``tok_1..tok_K``, ``recon_error`` and ``strength_1..strength_K`` set (-1 and NaN
    where success == 0). ``strength_k`` is :meth:`Tokenizer.strength` of the level-k token."""
    import pandas as pd

    tok.check_psi_version(psi_version(df))
    ok = (df["success"] == 1).to_numpy()
    psi = table_psi(df, tok.config.psi_kind)
    tokens = tok.encode(psi)
    out = df.drop(columns=[c for c in df.columns if c.startswith(("tok_", "strength_")) or c == RECON_ERROR_COLUMN])
    block = np.full((len(df), tok.levels), -1, dtype=np.int64)
    block[ok] = tokens
    err = np.full(len(df), np.nan, dtype=np.float32)
    err[ok] = tok.reconstruction_error(psi, tokens)
    cols = dict(zip(token_column_names(tok.levels), block.T))
    cols[RECON_ERROR_COLUMN] = err
    strength = np.full((len(df), tok.levels), np.nan, dtype=np.float32)
    strength[ok] = tok.strength(psi, tokens)
    cols.update(zip(strength_column_names(tok.levels), strength.T))
    return pd.concat([out, pd.DataFrame(cols, index=df.index)], axis=1)


def blendshape_geometry_map(blendshapes: np.ndarray, geometry: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Linear blendshape -> geometry map (ridge), as a (53, 1404) array: bias row then weights."""
    from sklearn.linear_model import Ridge

    ridge = Ridge(alpha=alpha).fit(blendshapes, geometry)
    return np.vstack([ridge.intercept_[None], ridge.coef_.T]).astype(np.float32)


