"""Runs you can trust: a run manifest per output folder, stable output names, resume.

The runner knows inputs, outputs and records, not faces: a stage hands it a function that turns one
input into a table, and the runner decides what to (re)do, names the output, writes it atomically
and records the result in ``manifest.sqlite`` (SQLite, standard library) in the output folder:

- one row per input ever seen there: resolved path, size, mtime, SHA-256 of the content (a
  size+mtime fast path avoids re-hashing), the table's ``video`` id and output file with its
  SHA-256, a hash of the options that change the output, status, error, frames, faces, seconds,
  dfe version, run count;
- ids: an input's id is its file stem when no other input of the folder has that stem, else
  ``<stem>-<8 hex of its path>``; assigned once (in a transaction) and kept for ever, so reruns
  and concurrent runs never give two inputs one output;
- resume: an input whose content and options match a finished record, with its output present,
  is skipped; a changed input is redone; ``overwrite`` redoes the inputs given;
- ``report.json`` is derived from the manifest after every input: it accumulates, never forgets.

Crash points for tests (never set them otherwise): ``DFE_CRASH_AT=after:N`` ends the process after
N finished inputs; ``DFE_CRASH_AT=write`` ends it in the middle of writing the first table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.sqlite"
REPORT_NAME = "report.json"
CRASH_ENV = "DFE_CRASH_AT"


class RunError(RuntimeError):
    """The output folder cannot be used (one sentence naming it)."""


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """Refuse, before any work, an output file path that is a folder or cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise RunError(f"{path} is a folder: give a file name for the {what} (e.g. {path / 'model.dfe'})")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=parent, prefix=".dfe-write-test-").close()
    except OSError as e:
        raise RunError(f"cannot write the {what} {path} ({e.strerror or e})") from None
    return path


def dfe_version() -> str:
    from dfe import __version__

    return __version__


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes; of a folder: of every file's relative path and content."""
    h = hashlib.sha256()
    path = Path(path)
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0" + file_sha256(f).encode())
        return h.hexdigest()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _stat(path: Path) -> tuple[int, int]:
    """(size, mtime) of a file; of a folder: total size and newest mtime of the files in it."""
    if path.is_dir():
        stats = [f.stat() for f in path.rglob("*") if f.is_file()]
        return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def options_hash(options: dict) -> str:
    """Short hash of the options that change a stage's output."""
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:16]


def crash_point(name: str, done: int = 0) -> None:
    """End the process here if ``DFE_CRASH_AT`` asks for it (deterministic crash tests)."""
    spec = os.environ.get(CRASH_ENV, "")
    if spec == name or (name == "after" and spec == f"after:{done}"):
        os._exit(99)


def _retry_locked(action, seconds: float = 300.0):
    """Run a database action, retrying while another process holds the lock (SQLite does not
    always wait by itself, e.g. for the journal-mode switch or a lock upgrade)."""
    deadline, delay = time.monotonic() + seconds, 0.02
    while True:
        try:
            return action()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, 0.5)


@dataclass
class Record:
    """One input's line in the manifest."""

    input: str
    id: str
    status: str = "pending"  # pending | ok | failed
    output: str | None = None
    size: int = 0
    mtime_ns: int = 0
    sha256: str = ""
    options: str = ""
    output_sha256: str = ""
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    error: str | None = None
    version: str = ""
    runs: int = 0
    finished: float = 0.0


COLUMNS = list(Record.__dataclass_fields__)


class Manifest:
    """The SQLite manifest of one output folder (safe for several processes at once)."""

    def __init__(self, outdir: str | Path):
        self.outdir = Path(outdir)
        if self.outdir.exists() and not self.outdir.is_dir():
            raise RunError(f"{self.outdir} is a file, not a folder: give a folder for the output")
        try:
            self.outdir.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.outdir, prefix=".dfe-write-test-")
            probe.close()
        except OSError as e:
            raise RunError(f"cannot write to the output folder {self.outdir} ({e.strerror or e})") from None
        self.path = self.outdir / MANIFEST_NAME
        self.db = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        cols = ", ".join(f"{c} {'TEXT PRIMARY KEY' if c == 'input' else ''}" for c in COLUMNS)

        def setup():
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"CREATE TABLE IF NOT EXISTS records ({cols})")
            self.db.execute("CREATE UNIQUE INDEX IF NOT EXISTS records_id ON records (id)")
            self._migrate_report()

        _retry_locked(setup)  # two runs starting at once: the journal-mode switch does not wait by itself

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ records
    def get(self, input_path: str) -> Record | None:
        row = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM records WHERE input = ?", (input_path,)).fetchone()
        return Record(*row) if row else None

    def records(self) -> list[Record]:
        rows = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM records ORDER BY input").fetchall()
        return [Record(*r) for r in rows]

    def put(self, rec: Record) -> None:
        marks = ", ".join("?" for _ in COLUMNS)
        _retry_locked(lambda: self.db.execute(f"INSERT OR REPLACE INTO records ({', '.join(COLUMNS)}) VALUES ({marks})",
                                              [getattr(rec, c) for c in COLUMNS]))

    def assign_id(self, input_path: str, stem: str) -> Record:
        """The input's record, creating it with a fresh id (its stem unless taken) if new."""
        _retry_locked(lambda: self.db.execute("BEGIN IMMEDIATE"))
        try:
            rec = self.get(input_path)
            if rec is None:
                taken = self.db.execute("SELECT 1 FROM records WHERE id = ?", (stem,)).fetchone()
                vid = f"{stem}-{hashlib.sha1(input_path.encode()).hexdigest()[:8]}" if taken else stem
                rec = Record(input_path, vid)
                self.put(rec)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return rec

    def _migrate_report(self) -> None:
        """A dfe 0.1 folder (report.json, no manifest yet): its finished tables become records (kept
        on reruns; their content hash is taken now, as the table was made from the file as it is)."""
        report = self.outdir / REPORT_NAME
        if self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] or not report.is_file():
            return
        try:
            old = json.loads(report.read_text()).get("results", [])
        except (ValueError, AttributeError):
            return
        for r in old:
            out = r.get("output")
            if r.get("status") in ("ok", "skipped") and out and Path(out).is_file() and Path(r["input"]).is_file():
                src = Path(r["input"]).resolve()
                st = src.stat()
                self.put(Record(str(src), Path(out).stem, "ok", out, st.st_size, st.st_mtime_ns, file_sha256(src),
                                "legacy", file_sha256(out), int(r.get("frames", 0)), int(r.get("faces", 0)),
                                float(r.get("seconds", 0.0)), None, "0.1", 1, time.time()))

    # ------------------------------------------------------------------ decisions
    def fingerprint(self, path: Path, rec: Record | None) -> tuple[int, int, str]:
        size, mtime = _stat(path)
        if rec and rec.sha256 and rec.size == size and rec.mtime_ns == mtime:
            return size, mtime, rec.sha256  # fast path: unchanged size and mtime
        return size, mtime, file_sha256(path)

    def state(self, rec: Record) -> str:
        """done | failed | stale (input changed or gone, output gone) | pending."""
        if rec.status == "failed":
            return "failed"
        if rec.status != "ok":
            return "pending"
        src = Path(rec.input)
        if not src.exists() or not rec.output or not Path(rec.output).is_file():
            return "stale"
        if _stat(src) != (rec.size, rec.mtime_ns) and file_sha256(src) != rec.sha256:
            return "stale"
        return "done"

    # ------------------------------------------------------------------ the report
    def write_report(self) -> Path:
        """report.json from every record (atomic; a unique temp file per process)."""
        results = [{"input": r.input, "id": r.id, "status": r.status, "output": r.output, "frames": r.frames,
                    "faces": r.faces, "seconds": r.seconds, "error": r.error, "sha256": r.sha256,
                    "options": r.options, "version": r.version, "runs": r.runs} for r in self.records()]
        fd, tmp = tempfile.mkstemp(dir=self.outdir, prefix=f".{REPORT_NAME}.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"results": results}, fh, indent=2)
        os.replace(tmp, self.outdir / REPORT_NAME)
        return self.outdir / REPORT_NAME


# ---------------------------------------------------------------------- driving a stage

@dataclass
class Outcome:
    """What one input came to in this run (the manifest holds the lasting record)."""

    input: str
    status: str  # ok | failed | skipped
    id: str = ""
    output: str | None = None
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class StageResult:
    """What a stage function returns for one input: the table and what to record about it."""

    table: "object"  # pandas DataFrame
    frames: int
    faces: int
    error: str | None = None  # set: the table is kept but the input counts as failed (e.g. truncated)


def run_stage(inputs: Iterable[Path], outdir: str | Path, process: Callable[[Path], StageResult],
              options: dict, suffix: str | Callable[[Path], str], overwrite: bool = False, on_error: Callable[[Exception], str] | None = None,
              progress: Callable[[Iterable], Iterable] | None = None,
              stem: Callable[[Path], str] | None = None, pass_id: bool = False) -> list[Outcome]:
    """Run ``process`` over ``inputs`` into ``outdir`` with the manifest's naming and resume rules.

    Tables are written atomically as ``<id><suffix>`` (``suffix`` may depend on the input; the id
    starts from ``stem(input)``, default the file stem); one bad input never stops the others.
    ``pass_id``: call ``process(path, id)``, for stages that write side files named by the id.
    """
    from dfe.table import write_table

    manifest = Manifest(outdir)
    opts = options_hash(options)
    outcomes: list[Outcome] = []
    done = 0
    try:
        for path in (progress or (lambda x: x))(list(inputs)):
            key = str(Path(path).resolve())
            rec = manifest.assign_id(key, stem(Path(path)) if stem else Path(path).stem)
            out = Path(outdir) / f"{rec.id}{suffix(Path(path)) if callable(suffix) else suffix}"
            start = time.perf_counter()
            try:
                size, mtime, sha = manifest.fingerprint(Path(path), rec)
                unchanged = rec.sha256 == sha and rec.options in (opts, "legacy")
                if rec.status == "ok" and unchanged and out.is_file() and not overwrite:
                    if (rec.size, rec.mtime_ns) != (size, mtime):  # touched, same content
                        rec.size, rec.mtime_ns = size, mtime
                        manifest.put(rec)
                    outcomes.append(Outcome(key, "skipped", rec.id, str(out), rec.frames, rec.faces))
                    continue
                result = process(Path(path), rec.id) if pass_id else process(Path(path))
                partial = write_table(result.table, out.with_name(f".{out.stem}.partial{out.suffix}"))  # hidden until done
                crash_point("write")
                os.replace(partial, out)
                rec = Record(key, rec.id, "failed" if result.error else "ok", str(out), size, mtime, sha, opts,
                             file_sha256(out), result.frames, result.faces, 0.0, result.error, dfe_version(),
                             rec.runs + 1, time.time())
            except Exception as e:  # noqa: BLE001 - one bad input must never stop the batch
                message = on_error(e) if on_error else f"{type(e).__name__}: {e}"
                rec = Record(key, rec.id, "failed", None, rec.size, rec.mtime_ns, rec.sha256, opts, "", 0, 0, 0.0,
                             message, dfe_version(), rec.runs + 1, time.time())
            rec.seconds = round(time.perf_counter() - start, 3)
            manifest.put(rec)
            manifest.write_report()
            if rec.status == "failed":
                log.error("%s: %s", path, rec.error)
            outcomes.append(Outcome(key, rec.status, rec.id, rec.output, rec.frames, rec.faces, rec.seconds, rec.error))
            done += 1
            crash_point("after", done)
        manifest.write_report()
    finally:
        manifest.close()
    return outcomes


def encode_corpus(tables: list[str | Path], model, outdir: str | Path | None = None, in_place: bool = False,
                  overwrite: bool = False, progress: bool = True) -> list[Outcome]:
    """``dfe encode``: add tok_1..tok_K to every table, into ``outdir`` (manifest, unique names,
    resume) or in place (each table rewritten atomically)."""
    from tqdm.auto import tqdm

    from dfe.table import find_tables, read_table, write_table
    from dfe.tokenizer import encode_table

    paths = find_tables(tables)

    def process(path: Path) -> StageResult:
        df = encode_table(read_table(path), model)
        return StageResult(df, int(df["frame"].nunique()) if "frame" in df else len(df), int((df["success"] == 1).sum()))

    def bar(items):
        return tqdm(items, desc="encode", unit="table", disable=not progress or len(items) < 2)

    if not in_place:
        return run_stage(paths, outdir, process, {"model": model.fingerprint()}, lambda p: p.suffix, overwrite, progress=bar)
    outcomes = []
    for path in bar(paths):
        try:
            result = process(path)
            write_table(result.table, path)
            outcomes.append(Outcome(str(path), "ok", path.stem, str(path), result.frames, result.faces))
        except Exception as e:  # noqa: BLE001 - one bad table must never stop the others
            outcomes.append(Outcome(str(path), "failed", path.stem, error=f"{type(e).__name__}: {e}"))
            log.error("%s: %s", path, e)
    return outcomes


def status(outdir: str | Path) -> dict[str, list[Record]]:
    """Records of an output folder grouped by state: done, failed, stale, pending."""
    if not (Path(outdir) / MANIFEST_NAME).is_file() and not (Path(outdir) / REPORT_NAME).is_file():
        raise RunError(f"{outdir} has no {MANIFEST_NAME}: not a dfe output folder")
    manifest = Manifest(outdir)
    try:
        groups: dict[str, list[Record]] = {"done": [], "failed": [], "stale": [], "pending": []}
        for rec in manifest.records():
            groups[manifest.state(rec)].append(rec)
        return groups
    finally:
        manifest.close()


def input_ids(folders: Iterable[str | Path]) -> dict[str, str]:
    """{input path: table id} from the manifests of table folders (for label files that name inputs)."""
    out: dict[str, str] = {}
    for folder in folders:
        path = Path(folder) / MANIFEST_NAME
        if Path(folder).is_dir() and path.is_file():
            db = sqlite3.connect(path, timeout=60)
            try:
                out.update(dict(db.execute("SELECT input, id FROM records").fetchall()))
            finally:
                db.close()
    return out

