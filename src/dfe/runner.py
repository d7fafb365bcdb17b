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
from typing import Callable, Iterable

from dfe.table import publish

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.sqlite"
REPORT_NAME = "report.json"
NATIVE_LOG = "native.log"  # what native libraries (OpenCV, ffmpeg, libpng, MediaPipe) print during a run
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


@dataclass
class StageResult:
    """What a stage function returns for one input: the table and what to record about it."""

    table: "object"  # pandas DataFrame
    frames: int
    faces: int
    error: str | None = None  # set: the table is kept but the input counts as failed (e.g. truncated)

    @classmethod
    def counted(cls, table, frames_table=None) -> "StageResult":
        """``table`` with the frames and faces of ``frames_table`` (default: ``table`` itself)."""
        df = table if frames_table is None else frames_table
        return cls(table, int(df["frame"].nunique()) if "frame" in df else len(df), int((df["success"] == 1).sum()))


@dataclass
class _Job:
    """One input to (re)do: where its table goes and what to record."""

    path: Path
    rec: Record
    out: Path
    size: int
    mtime: int
    sha: str

    @property
    def partial(self) -> Path:
        return self.out.with_name(f".{self.out.stem}.partial-{os.getpid()}{self.out.suffix}")  # hidden until done


def _work(process: Callable, path: Path, partial: Path, job_id: str, pass_id: bool,
          on_error: Callable[[Exception], str] | None = None):
    """Run one input (in any process) and write its table to ``partial``: (frames, faces, error,
    seconds, failed). A worker never touches the manifest; the driver commits."""
    from dfe import progress
    from dfe.table import write_table

    start = time.perf_counter()
    try:
        result = process(path, job_id) if pass_id else process(path)
        write_table(result.table, partial)
        crash_point("write")
        return result.frames, result.faces, result.error, time.perf_counter() - start, False
    except Exception as e:  # noqa: BLE001 - one bad input must never stop the batch
        return 0, 0, on_error(e) if on_error else f"{type(e).__name__}: {e}", time.perf_counter() - start, True
    finally:
        progress.flush()


def _plan(manifest: Manifest, inputs: list[Path], outdir: Path, opts: str, suffix, overwrite: bool,
          stem) -> tuple[list[_Job], list[Outcome]]:
    """Assign ids, skip finished inputs and those another live run has claimed; the rest are
    claimed and become jobs, largest first. An input that cannot be resolved, stat'ed or read is
    its own failed record."""
    jobs, skipped = [], []
    for path in inputs:
        path = Path(path)
        key = input_key(path)
        rec = manifest.assign_id(key, (stem(path) if stem else path.stem) or "input")
        try:
            out = Path(outdir) / f"{rec.id}{suffix(path) if callable(suffix) else suffix}"
            size, mtime, sha = manifest.fingerprint(path, rec)
        except (OSError, RuntimeError) as e:
            rec.status, rec.error, rec.runs = "failed", unreadable_reason(path, e), rec.runs + 1
            rec.version, rec.finished = dfe_version(), time.time()
            manifest.put(rec)
            log.error("%s: %s", path, rec.error)
            skipped.append(Outcome(key, "failed", rec.id, error=rec.error))
            continue
        unchanged = rec.sha256 == sha and rec.options in (opts, "legacy")
        if rec.status == "ok" and unchanged and out.is_file() and not overwrite:
            if (rec.size, rec.mtime_ns) != (size, mtime):  # touched, same content
                rec.size, rec.mtime_ns = size, mtime
                manifest.put(rec)
            skipped.append(Outcome(key, "skipped", rec.id, str(out), rec.frames, rec.faces))
            continue
        holder = manifest.claim(key)
        if holder is not None:
            skipped.append(Outcome(key, "claimed", rec.id,
                                   error=f"another dfe run (process {holder}) is working on it: skipped"))
            continue
        jobs.append(_Job(path, rec, out, size, mtime, sha))
    jobs.sort(key=lambda j: -j.size)
    return jobs, skipped


def _commit(manifest: Manifest, job: _Job, opts: str, result) -> Outcome:
    frames, faces, error, seconds, failed = result
    rec = manifest.get(job.rec.input) or job.rec  # the runs so far, as recorded (another run may have added one)
    if failed:
        rec = Record(rec.input, rec.id, "failed", None, rec.size, rec.mtime_ns, rec.sha256, opts, "", 0, 0, 0.0,
                     error, dfe_version(), rec.runs + 1, time.time())
    else:
        os.replace(job.partial, job.out)
        rec = Record(rec.input, rec.id, "failed" if error else "ok", str(job.out), job.size, job.mtime, job.sha, opts,
                     file_sha256(job.out), frames, faces, 0.0, error, dfe_version(), rec.runs + 1, time.time())
    rec.seconds = round(seconds, 3)
    manifest.put(rec)
    manifest.release([rec.input])
    manifest.write_report()
    if rec.status == "failed":
        log.error("%s: %s", job.path, rec.error)
    return Outcome(rec.input, rec.status, rec.id, rec.output, rec.frames, rec.faces, rec.seconds, rec.error)


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def run_stage(inputs: Iterable[Path], outdir: str | Path, process: Callable[[Path], StageResult],
              options: dict, suffix: str | Callable[[Path], str], overwrite: bool = False,
              on_error: Callable[[Exception], str] | None = None, show_progress: bool = True,
              stem: Callable[[Path], str] | None = None, pass_id: bool = False, workers: int = 1,
              engine: str = "local", ray_address: str | None = None,
              frames_of: Callable[[Path], int] | None = None, desc: str = "run",
              unit: str | None = None) -> list[Outcome]:
    """Run ``process`` over ``inputs`` into ``outdir`` with the manifest's naming and resume rules.

    Tables are written atomically as ``<id><suffix>`` (``suffix`` may depend on the input; the id
    starts from ``stem(input)``, default the file stem); one bad input never stops the others.
    ``pass_id``: call ``process(path, id)``, for stages that write side files named by the id.
    ``workers > 1``: a process pool (``process`` must pickle; each worker builds its own state,
    e.g. one landmarker); ``engine="ray"``: one Ray task per input on a local or joined cluster
    (``ray_address``), outputs written by the tasks to ``outdir`` (a path they all see). Either
    way only this process writes the manifest, in the order inputs finish, largest inputs start
    first, and one progress display counts frames (``frames_of(path)`` estimates the total) or,
    without ``frames_of``, inputs (``unit``, default "table"). What native libraries print while
    it runs goes to ``native.log`` in ``outdir`` (see :func:`dfe.io.quiet_native`).
    """
    from dfe.io import NATIVE_LOG_ENV
    from dfe.progress import Progress

    if engine not in ("local", "ray"):
        raise ValueError("engine must be 'local' or 'ray'")
    manifest = Manifest(outdir)
    opts = options_hash(options)
    outcomes: list[Outcome] = []
    display, jobs = None, []
    previous_log = os.environ.get(NATIVE_LOG_ENV)
    os.environ[NATIVE_LOG_ENV] = str(Path(outdir).resolve() / NATIVE_LOG)  # workers inherit it
    try:
        manifest.remove_stale_temp_files()
        jobs, skipped = _plan(manifest, list(inputs), Path(outdir), opts, suffix, overwrite, stem)
        outcomes += skipped
        total = sum(frames_of(j.path) for j in jobs) if frames_of else len(jobs)
        display = Progress(total, desc, "frame" if frames_of else (unit or "table"), enabled=show_progress and bool(jobs))
        if engine == "ray":
            outcomes += _run_ray(manifest, jobs, process, opts, pass_id, on_error, display, frames_of, ray_address)
        elif workers > 1 and len(jobs) > 1:
            outcomes += _run_pool(manifest, jobs, process, opts, pass_id, on_error, display, workers)
        else:
            from dfe import progress

            progress.set_sink(display.update if frames_of else None)
            try:
                for done, job in enumerate(jobs, 1):
                    outcomes.append(_commit(manifest, job, opts, _work(process, job.path, job.partial, job.rec.id,
                                                                       pass_id, on_error)))
                    if not frames_of:
                        display.update(1)
                    crash_point("after", done)
            finally:
                progress.set_sink(None)
        manifest.write_report()
    finally:
        if display is not None:
            display.close()
        if previous_log is None:
            os.environ.pop(NATIVE_LOG_ENV, None)
        else:
            os.environ[NATIVE_LOG_ENV] = previous_log
        try:
            manifest.release([j.rec.input for j in jobs])  # whatever was claimed and not finished
        finally:
            manifest.close()
    return outcomes


WORKER_DIED = "the worker process died while working on this input (a crash in a native library?)"


def _run_pool(manifest: Manifest, jobs: list[_Job], process, opts: str, pass_id: bool, on_error, display,
              workers: int) -> list[Outcome]:
    """A spawn process pool. If a worker dies (a native crash), the inputs it may have held are
    retried one at a time in fresh pools, so only the input that kills its worker is failed."""
    import multiprocessing as mp
    import queue
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")  # no inherited threads or landmarker state
    sink = ctx.Queue()  # frame counts from the workers, handed over when each worker starts
    outcomes: list[Outcome] = []
    done = 0

    def drain():
        try:
            while True:
                display.update(sink.get_nowait())
        except queue.Empty:
            pass

    batches, suspects = [(jobs, workers)], []
    while batches:
        todo, n = batches.pop(0)
        with ProcessPoolExecutor(max_workers=max(1, min(n, len(todo))), mp_context=ctx,
                                 initializer=_worker_init, initargs=(sink,)) as pool:
            pending = {pool.submit(_work, process, j.path, j.partial, j.rec.id, pass_id, on_error): j for j in todo}
            while pending:
                finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                drain()
                for fut in finished:
                    job = pending.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        if len(todo) > 1:
                            suspects.append(job)  # retried alone below
                            continue
                        result = (0, 0, WORKER_DIED, 0.0, True)
                    outcomes.append(_commit(manifest, job, opts, result))
                    done += 1
                    crash_point("after", done)
        if not batches and suspects:
            batches, suspects = [([j], 1) for j in suspects], []
    drain()
    return outcomes


def _worker_init(sink) -> None:
    """In each pool worker: send frame counts to the driver, and die with it (Linux), so a killed
    run leaves no workers behind."""
    import signal

    from dfe import progress

    progress.set_sink(sink.put)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_ray(manifest: Manifest, jobs: list[_Job], process, opts: str, pass_id: bool, on_error, display,
             frames_of, address: str | None) -> list[Outcome]:
    try:
        import ray
    except ImportError:
        raise RunError("--engine ray needs Ray: pip install 'dfe[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    task = ray.remote(num_cpus=1)(_work)
    refs = {task.remote(process, j.path, j.partial, j.rec.id, pass_id, on_error): j for j in jobs}
    outcomes, done = [], 0
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            job = refs.pop(ref)
            outcomes.append(_commit(manifest, job, opts, ray.get(ref)))
            display.update(frames_of(job.path) if frames_of else 1)
            done += 1
            crash_point("after", done)
    return outcomes


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
        from dfe import progress
        from dfe.table import read_table
        from dfe.tokenizer import encode_table

        df = encode_table(read_table(path), self.model)
        progress.frames_done(len(df))
        return StageResult.counted(df)


def encode_corpus(tables: list[str | Path], model, outdir: str | Path | None = None, in_place: bool = False,
                  overwrite: bool = False, progress: bool = True, workers: int = 1, engine: str = "local",
                  ray_address: str | None = None) -> list[Outcome]:
    """``dfe encode``: add tok_1..tok_K to every table, into ``outdir`` (manifest, unique names,
    resume; ``workers``/``engine`` as in :func:`run_stage`) or in place (each table rewritten
    atomically, one process)."""
    from dfe.progress import counted
    from dfe.table import find_tables, write_table

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

