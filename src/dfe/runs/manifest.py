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
- ``report.json`` is derived from the manifest after every input: it accumulates, never forgets;
- claims: a run claims the inputs it is about to do (pid and host in the ``claims`` table); another
  run skips an input claimed by a live process (and says so) and takes over a claim whose process
  is dead; temp files left by a killed run are removed when the next run starts;
- any failure to resolve, stat or read an input (a symbolic link loop, a vanished file) becomes that
  input's failed record with one sentence: it never stops the batch.

Crash points for tests (never set them otherwise): ``DFE_CRASH_AT=after:N`` ends the process after
N finished inputs; ``DFE_CRASH_AT=write`` ends it in the middle of writing the first table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from dfe.errors import DfeError
from dfe.extraction.io import file_sha256
from dfe.version import __version__
from dfe.table import publish

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.sqlite"
REPORT_NAME = "report.json"
NATIVE_LOG = "native.log"  # what native libraries (OpenCV, ffmpeg, libpng, MediaPipe) print during a run
CRASH_ENV = "DFE_CRASH_AT"


class RunError(DfeError, RuntimeError):
    """A run cannot start: its output folder, format or engine cannot be used (one sentence naming it)."""


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
    return __version__


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


def _alive(pid: int, host: str | None = None) -> bool:
    """Whether process ``pid`` of ``host`` may still be running (another host's: assumed so)."""
    if host and host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except (OSError, ValueError, OverflowError):
        return False
    return True


def input_key(path: str | Path) -> str:
    """The manifest's name for an input: its resolved path; for a path that cannot be resolved
    (a symbolic link loop) or leads nowhere, its absolute path as given."""
    path = Path(path)
    try:
        if path.is_symlink() and not path.exists():
            return str(path.absolute())
        return str(path.resolve())
    except (OSError, RuntimeError):
        return str(Path(path).absolute())


def unreadable_reason(path: str | Path, error: BaseException | None = None) -> str:
    """One sentence for an input that cannot be resolved, stat'ed or read."""
    path = Path(path)
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:
            return "a symbolic link loop (the link points, through other links, back to itself)"
        except OSError:
            return f"a symbolic link to a missing file ({os.readlink(path)})"
    if isinstance(error, OSError):
        return f"cannot read the file ({error.strerror or error})"
    return f"cannot read the file ({error})" if error else "cannot read the file"


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


def _record(row) -> Record:
    """A record from a row of ``SELECT <COLUMNS>``."""
    return Record(**dict(zip(COLUMNS, row)))


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
            self.db.execute("CREATE TABLE IF NOT EXISTS claims (input TEXT PRIMARY KEY, pid INTEGER, host TEXT, since REAL)")
            self._migrate_report()

        _retry_locked(setup)  # two runs starting at once: the journal-mode switch does not wait by itself

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ records
    def get(self, input_path: str) -> Record | None:
        row = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM records WHERE input = ?", (input_path,)).fetchone()
        return _record(row) if row else None

    def records(self) -> list[Record]:
        rows = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM records ORDER BY input").fetchall()
        return [_record(r) for r in rows]

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
                rec = Record(input=input_path, id=vid)
                self.put(rec)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return rec

    # ------------------------------------------------------------------ claims
    def claim(self, input_path: str, pid: int | None = None) -> int | None:
        """Claim an input for process ``pid`` (default: this one): None when claimed, else the pid
        of the live process of this host that holds it (a dead process's claim is taken over)."""
        pid = os.getpid() if pid is None else pid
        _retry_locked(lambda: self.db.execute("BEGIN IMMEDIATE"))
        try:
            row = self.db.execute("SELECT pid, host FROM claims WHERE input = ?", (input_path,)).fetchone()
            if row and row[0] != pid and _alive(row[0], row[1]):
                self.db.execute("COMMIT")
                return int(row[0])
            self.db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)",
                            (input_path, pid, socket.gethostname(), time.time()))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return None

    def release(self, input_paths: Iterable[str], pid: int | None = None) -> None:
        """Drop this process's claims on these inputs."""
        pid = os.getpid() if pid is None else pid
        _retry_locked(lambda: self.db.executemany("DELETE FROM claims WHERE input = ? AND pid = ?",
                                                  [(p, pid) for p in input_paths]))

    def remove_stale_temp_files(self, untagged_age: float = 600.0) -> list[Path]:
        """Delete the temp files of runs that died (kill -9, power cut): those tagged with the pid
        of a dead process of this host, and untagged ones (dfe 0.3 wrote no pid) older than
        ``untagged_age`` seconds. Returns what was removed."""
        removed = []
        for f in self.outdir.glob(".*"):
            if not f.is_file() or not (".partial" in f.name or f.name.endswith(".tmp")) or f.name.startswith(".dfe-write-test-"):
                continue
            tag = re.search(r"\.(?:partial-|pid)(\d+)", f.name)
            if tag and (int(tag.group(1)) == os.getpid() or _alive(int(tag.group(1)), socket.gethostname())):
                continue
            if not tag and time.time() - f.stat().st_mtime < untagged_age:
                continue
            try:
                f.unlink()
                removed.append(f)
            except OSError:
                pass
        if removed:
            log.info("removed %d temp file(s) of an earlier run that was killed", len(removed))
        return removed

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
                self.put(Record(input=str(src), id=Path(out).stem, status="ok", output=out, size=st.st_size,
                                mtime_ns=st.st_mtime_ns, sha256=file_sha256(src), options="legacy",
                                output_sha256=file_sha256(out), frames=int(r.get("frames", 0)),
                                faces=int(r.get("faces", 0)), seconds=float(r.get("seconds", 0.0)), version="0.1",
                                runs=1, finished=time.time()))

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
    def record_problems(self, problems) -> None:
        """A failed record for each input that could not even be read (``io.InputProblem``s), so
        every input gets a record, a bad one too; the report is rewritten."""
        for prob in problems:
            rec = self.assign_id(input_key(prob.path), Path(prob.path).name or "input")
            rec.status, rec.error, rec.runs = "failed", prob.error, rec.runs + 1
            self.put(rec)
            log.error("%s: %s", prob.path, prob.error)
        self.write_report()

    def write_report(self) -> Path:
        """report.json from every record (atomic; a unique temp file per process)."""
        results = [{"input": r.input, "id": r.id, "status": r.status, "output": r.output, "frames": r.frames,
                    "faces": r.faces, "seconds": r.seconds, "error": r.error, "sha256": r.sha256,
                    "options": r.options, "version": r.version, "runs": r.runs} for r in self.records()]
        fd, tmp = tempfile.mkstemp(dir=self.outdir, prefix=f".{REPORT_NAME}.pid{os.getpid()}.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"results": results}, fh, indent=2)
        publish(tmp, self.outdir / REPORT_NAME)
        return self.outdir / REPORT_NAME


# ---------------------------------------------------------------------- driving a stage

@dataclass
class Outcome:
    """What one input came to in this run (the manifest holds the lasting record)."""

    input: str
    status: str  # ok | failed | skipped (up to date) | claimed (another live run has it)
    id: str = ""
    output: str | None = None
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    error: str | None = None


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
