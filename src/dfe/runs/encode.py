"""dfe encode: tokens for every table of a corpus, through the manifest."""

from __future__ import annotations

import logging
from pathlib import Path
from dfe.errors import error_sentence
from dfe.runs.executors import Executor, Stage, StageResult, WorkItem, run_stage
from dfe.runs.manifest import Outcome
from dfe.progress import counted
from dfe.table import find_tables, read_table, write_table
from dfe.runs import progress
from dfe.tokens.tables import encode_table

log = logging.getLogger(__name__)


def table_rows(path: Path) -> int:
    """Rows of a table, from Parquet's footer when possible (for progress totals)."""
    if Path(path).suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with open(path, "rb") as f:
        return max(sum(1 for _ in f) - 1, 0)


def table_suffix(path: Path) -> str:
    """An encoded table keeps its input's format."""
    return Path(path).suffix


class EncodeTable:
    """The encode stage for one table; picklable, so workers can run it."""

    def __init__(self, model):
        self.model = model

    def __call__(self, item: WorkItem) -> StageResult:
        df = encode_table(read_table(item.path), self.model)
        progress.frames_done(len(df))
        return StageResult.counted(df)


def encode_corpus(tables: list[str | Path], model, outdir: str | Path | None = None, in_place: bool = False,
                  overwrite: bool = False, progress: bool = True, workers: int = 1, engine: str = "local",
                  ray_address: str | None = None) -> list[Outcome]:
    """``dfe encode``: add tok_1..tok_K to every table, into ``outdir`` (manifest, unique names,
    resume; ``workers``/``engine``/``ray_address`` as in :class:`Executor`) or in place (each table
    rewritten atomically, one process)."""
    paths = find_tables(tables)
    process = EncodeTable(model)
    if not in_place:
        stage = Stage("encode", process, {"model": model.fingerprint()}, table_suffix, frames_of=table_rows)
        return run_stage(stage, paths, outdir, overwrite=overwrite, executor=Executor(workers, engine, ray_address),
                         show_progress=progress)
    outcomes = []
    for path in counted(paths, len(paths), "encode", "table", enabled=progress):
        try:
            result = process(WorkItem(path, path.stem))
            write_table(result.table, path)
            outcomes.append(Outcome(str(path), "ok", path.stem, str(path), result.frames, result.faces))
        except Exception as e:  # noqa: BLE001 - one bad table must never stop the others
            outcomes.append(Outcome(str(path), "failed", path.stem, error=error_sentence(e)))
            log.error("%s: %s", path, outcomes[-1].error)
    return outcomes
