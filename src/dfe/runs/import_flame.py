"""dfe import-flame: FLAME parameters written by EMOCA/DECA/SMIRK become per-frame tables."""

from __future__ import annotations

from pathlib import Path
from dfe.extraction.flame import FlameInputError, find_flame_units, flame_table, read_unit
from dfe.runs.executors import StageResult, run_stage


def import_flame(source: str | Path, outdir: str | Path, fps: float = 30.0, overwrite: bool = False):
    """Every table of a FLAME output into ``outdir``, with the manifest, names and resume rules of
    ``dfe extract`` (:mod:`dfe.runs.manifest`). Returns the per-unit outcomes."""
    units = {u.source: u for u in find_flame_units(source)}

    def process(path: Path) -> StageResult:
        df = flame_table(read_unit(units[path]), fps)
        return StageResult(df, int(df["frame"].nunique()), len(df))

    return run_stage(list(units), outdir, process, {"fps": fps, "kind": "flame"}, ".parquet", overwrite,
                     on_error=lambda e: str(e) if isinstance(e, FlameInputError) else f"{type(e).__name__}: {e}",
                     stem=lambda p: units[p].id)


