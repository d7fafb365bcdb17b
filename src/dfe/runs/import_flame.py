"""dfe import-flame: FLAME parameters written by EMOCA/DECA/SMIRK become per-frame tables."""

from __future__ import annotations

from pathlib import Path
from dfe.extraction.flame import FlameUnit, find_flame_units, flame_table, read_unit
from dfe.runs.executors import Stage, StageResult, WorkItem, run_stage


class FlameTables:
    """The import-flame stage: one unit (a video's or a photo folder's FLAME parameters) -> its table."""

    def __init__(self, units: dict[Path, FlameUnit], fps: float):
        self.units, self.fps = units, fps

    def __call__(self, item: WorkItem) -> StageResult:
        df = flame_table(read_unit(self.units[item.path]), self.fps)
        return StageResult.counted(df)  # every FLAME row has success = 1

    def unit_id(self, path: Path) -> str:
        return self.units[path].id


def import_flame(source: str | Path, outdir: str | Path, fps: float = 30.0, overwrite: bool = False,
                 progress: bool = True):
    """Every table of a FLAME output into ``outdir``, with the manifest, names and resume rules of
    ``dfe extract`` (:mod:`dfe.runs.manifest`). Returns the per-unit outcomes."""
    tables = FlameTables({u.source: u for u in find_flame_units(source)}, fps)
    stage = Stage("import-flame", tables, {"fps": fps, "kind": "flame"}, ".parquet", stem=tables.unit_id)
    return run_stage(stage, list(tables.units), outdir, overwrite=overwrite, show_progress=progress)
