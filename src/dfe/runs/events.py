"""dfe events: events, an ELAN file and a timeline for every table of a corpus."""

from __future__ import annotations

from pathlib import Path
from dfe.analysis.events import EventOptions, name_events, token_events
from dfe.analysis.elan import write_eaf
from dfe.errors import DfeError
from dfe.views.naming import name_codes
from dfe.runs.executors import Stage, StageResult, WorkItem, run_stage
from dfe.table import find_tables, read_table, token_columns
from dfe.views.timeline import timeline_figure
from dfe.tokens.tables import encode_table

EVENT_FORMATS = ("parquet", "csv")


class EventsError(DfeError, ValueError):
    """A table or option ``dfe events`` cannot use (one sentence naming it)."""


class TableEvents:
    """The events stage for one table: its events table, and ``<id>.eaf`` (and ``<id>.timeline.png``)
    beside it; tables without tokens are encoded with ``model`` first."""

    def __init__(self, model, outdir: Path, options: EventOptions, tiers: str, timeline: bool, max_rows: int):
        self.model, self.outdir, self.options = model, outdir, options
        self.tiers, self.timeline, self.max_rows = tiers, timeline, max_rows

    def __call__(self, item: WorkItem) -> StageResult:
        df = read_table(item.path)
        if not {"success", "timestamp", "face_id"} <= set(df.columns):
            raise EventsError(f"{item.path} is not a dfe per-frame table (no success, timestamp or face_id column)")
        if not token_columns(df):
            df = encode_table(df, self.model)
        df = df.copy()  # one block again after encode's column inserts (no fragmentation warning)
        df["video"] = item.id
        ev = token_events(df, self.model, self.options)
        ev = name_events(ev, name_codes(self.model, sorted(set(ev["code"].astype(int)))))
        media = str(df["file"].iloc[0]) if "file" in df.columns and len(df) else None
        write_eaf(ev, self.outdir / f"{item.id}.eaf", media if media and Path(media).is_file() else None, self.tiers)
        if self.timeline:
            timeline_figure(ev, df, self.outdir / f"{item.id}.timeline.png", title=f"{item.id}: {len(ev)} events",
                            max_rows=self.max_rows)
        return StageResult.counted(ev, df)


def events_corpus(tables: list, model, outdir, options: EventOptions = EventOptions(), fmt: str = "parquet",
                  tiers: str = "code", timeline: bool = True, overwrite: bool = False, progress: bool = True,
                  max_rows: int = 24) -> list:
    """``dfe events``: for every per-frame table, ``<id>.events.parquet`` (or ``.csv``), ``<id>.eaf``
    for ELAN and, with ``timeline``, ``<id>.timeline.png`` in ``outdir``; tables without tokens
    are encoded with ``model`` first; a timeline draws at most ``max_rows`` codes (and says how many
    it left out). Runs under the manifest (unique ids, resume, one record per
    table; a bad table never stops the others)."""
    if fmt not in EVENT_FORMATS:
        raise EventsError(f"the events format must be {' or '.join(EVENT_FORMATS)}, not {fmt!r}")
    outdir = Path(outdir)
    opts = {"model": model.fingerprint(), **options.__dict__, "tiers": tiers, "timeline": timeline,
            **({"max_rows": max_rows} if timeline and max_rows != 24 else {})}
    stage = Stage("events", TableEvents(model, outdir, options, tiers, timeline, max_rows), opts, f".events.{fmt}")
    return run_stage(stage, find_tables(tables), outdir, overwrite=overwrite, show_progress=progress)
