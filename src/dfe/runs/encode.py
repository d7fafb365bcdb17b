"""dfe encode: tokens for every table of a corpus, through the manifest."""

from __future__ import annotations

import logging
from pathlib import Path
from dfe.runs.executors import StageResult, run_stage
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


class EncodeTable:
    """The encode stage for one table; picklable, so workers can run it."""

    def __init__(self, model):
        self.model = model

    def __call__(self, path: Path) -> StageResult:
        df = encode_table(read_table(path), self.model)
        progress.frames_done(len(df))
        return StageResult.counted(df)


def encode_corpus(tables: list[str | Path], model, outdir: str | Path | None = None, in_place: bool = False,
                  overwrite: bool = False, progress: bool = True, workers: int = 1, engine: str = "local",
                  ray_address: str | None = None) -> list[Outcome]:
    """``dfe encode``: add tok_1..tok_K to every table, into ``outdir`` (manifest, unique names,
    resume; ``workers``/``engine`` as in :func:`run_stage`) or in place (each table rewritten
    atomically, one process)."""
    paths = find_tables(tables)
    process = EncodeTable(model)
    if not in_place:
        return run_stage(paths, outdir, process, {"model": model.fingerprint()}, lambda p: p.suffix, overwrite,
                         show_progress=progress, workers=workers, engine=engine, ray_address=ray_address,
                         frames_of=table_rows, desc="encode")
    outcomes = []
    for path in counted(paths, len(paths), "encode", "table", enabled=progress):
        try:
            result = process(path)
            write_table(result.table, path)
            outcomes.append(Outcome(str(path), "ok", path.stem, str(path), result.frames, result.faces))
        except Exception as e:  # noqa: BLE001 - one bad table must never stop the others
            outcomes.append(Outcome(str(path), "failed", path.stem, error=f"{type(e).__name__}: {e}"))
            log.error("%s: %s", path, e)
    return outcomes


