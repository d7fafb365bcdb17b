"""dfe openface: dfe tables become OpenFace 2.2 CSV files."""

from __future__ import annotations

from pathlib import Path
from dfe.extraction.openface import openface_frame
from dfe.runs.manifest import Outcome
from dfe.table import find_tables, read_table, write_table


def convert_tables(inputs: list[str | Path], outdir: str | Path, overwrite: bool = False) -> list:
    """dfe per-frame tables -> OpenFace CSVs ``<outdir>/<table stem>.csv``; one Outcome per table,
    a bad table fails alone."""
    outdir = Path(outdir)
    results = []
    for path in find_tables(inputs):
        target = outdir / f"{path.stem}.csv"
        if target.exists() and not overwrite and target.stat().st_mtime >= path.stat().st_mtime:
            results.append(Outcome(str(path), "skipped", path.stem, str(target)))
            continue
        try:
            df = read_table(path)
            if "success" not in df.columns or "frame" not in df.columns:
                raise ValueError("not a dfe per-frame table (no frame and success columns)")
            out = openface_frame(df)
            write_table(out, target)
            results.append(Outcome(str(path), "ok", path.stem, str(target), int(out["frame"].nunique()), int(out["success"].sum())))
        except Exception as e:  # noqa: BLE001 - one bad table never stops the batch
            results.append(Outcome(str(path), "failed", path.stem, error=f"{path}: {type(e).__name__}: {e}"))
    return results


