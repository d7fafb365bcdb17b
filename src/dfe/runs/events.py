"""dfe events: events, an ELAN file and a timeline for every table of a corpus."""

from __future__ import annotations

from dfe.analysis.events import EventOptions, name_events, token_events
from dfe.analysis.elan import write_eaf
from dfe.views.naming import name_codes
from dfe.runs.executors import StageResult, run_stage
from dfe.table import find_tables, read_table, token_columns
from dfe.views.timeline import timeline_figure
from dfe.tokens.tables import encode_table


def events_corpus(tables: list, model, outdir, options: EventOptions = EventOptions(), fmt: str = "parquet",
                  tiers: str = "code", timeline: bool = True, overwrite: bool = False, progress: bool = True,
                  max_rows: int = 24) -> list:
    """``dfe events``: for every per-frame table, ``<id>.events.parquet`` (or ``.csv``), ``<id>.eaf``
    for ELAN and, with ``timeline``, ``<id>.timeline.png`` in ``outdir``; tables without tokens
    are encoded with ``model`` first; a timeline draws at most ``max_rows`` codes (and says how many
    it left out). Runs under the manifest (unique ids, resume, one record per
    table; a bad table never stops the others)."""
    from pathlib import Path


    if fmt not in ("parquet", "csv"):
        raise ValueError("format must be parquet or csv")
    outdir = Path(outdir)

    def process(path: Path, video: str) -> StageResult:
        df = read_table(path)
        if not {"success", "timestamp", "face_id"} <= set(df.columns):
            raise ValueError(f"{path} is not a dfe per-frame table (no success, timestamp or face_id column)")
        if not token_columns(df):
            df = encode_table(df, model)
        df = df.copy()  # one block again after encode's column inserts (no fragmentation warning)
        df["video"] = video
        ev = token_events(df, model, options)
        ev = name_events(ev, name_codes(model, sorted(set(ev["code"].astype(int)))))
        media = str(df["file"].iloc[0]) if "file" in df.columns and len(df) else None
        write_eaf(ev, outdir / f"{video}.eaf", media if media and Path(media).is_file() else None, tiers)
        if timeline:
            timeline_figure(ev, df, outdir / f"{video}.timeline.png", title=f"{video}: {len(ev)} events",
                            max_rows=max_rows)
        return StageResult.counted(ev, df)

    opts = {"model": model.fingerprint(), **options.__dict__, "tiers": tiers, "timeline": timeline,
            **({"max_rows": max_rows} if timeline and max_rows != 24 else {})}
    return run_stage(find_tables(tables), outdir, process, opts, f".events.{fmt}", overwrite, show_progress=progress,
                     stem=lambda p: p.stem, pass_id=True, desc="events", unit="table")


