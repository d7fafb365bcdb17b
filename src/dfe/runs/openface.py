"""dfe openface: dfe tables become OpenFace 2.2 CSV files, via the manifest."""

from __future__ import annotations

from pathlib import Path
from dfe.errors import DfeError
from dfe.extraction.openface import openface_frame
from dfe.runs.executors import Stage, StageResult, WorkItem, run_stage
from dfe.runs.manifest import Outcome
from dfe.table import find_tables, read_table


class ConversionError(DfeError, ValueError):
    """A table ``dfe openface`` cannot convert (one sentence naming it)."""


def openface_table(item: WorkItem) -> StageResult:
    """The openface stage: one dfe per-frame table (any dfe version) -> its OpenFace 2.2 frame."""
    df = read_table(item.path)
    if "success" not in df.columns or "frame" not in df.columns:
        raise ConversionError(f"{item.path} is not a dfe per-frame table (no frame and success columns)")
    out = openface_frame(df)
    return StageResult.counted(out)


def convert_tables(inputs: list[str | Path], outdir: str | Path, overwrite: bool = False,
                   progress: bool = True) -> list[Outcome]:
    """dfe per-frame tables -> OpenFace CSVs ``<outdir>/<id>.csv`` (the id: the table's stem unless
    another table of the folder has it), with the manifest's resume rules; a bad table fails alone."""
    stage = Stage("openface", openface_table, {"stage": "openface"}, ".csv")
    return run_stage(stage, find_tables(inputs), outdir, overwrite=overwrite, show_progress=progress)
