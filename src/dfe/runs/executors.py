"""How a stage runs over many inputs: plan against the manifest, work in one process, a process pool
or Ray, commit each result.

The contract between a stage and the runner is three dataclasses. A :class:`Stage` says what the
runner needs to know (the function, the options that change its output, how outputs are named);
the function is called with a :class:`WorkItem` (an input's path and the id its outputs are named
by) in whichever process does the work and returns a :class:`StageResult`; the runner writes its
table there and hands a :class:`WorkResult` back to the driver, the one process that writes the
manifest. An :class:`Executor` says where the work runs.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable
from dfe.errors import error_sentence
from dfe.runs.manifest import Manifest, NATIVE_LOG, Outcome, Record, RunError, crash_point, dfe_version, file_sha256, input_key, options_hash, unreadable_reason
from dfe.runs import progress
from dfe.table import video_id, write_table
from dfe.extraction.io import NATIVE_LOG_ENV
from dfe.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkItem:
    """One input as a stage sees it: its path, and the id the runner names its table by (a stage
    that writes files beside the table, e.g. ``<id>.eaf``, names them by it too)."""

    path: Path
    id: str


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


@dataclass(frozen=True)
class Stage:
    """A stage as the runner sees it.

    ``process`` turns one :class:`WorkItem` into a :class:`StageResult` (it must pickle for a pool
    or Ray; each process then builds its own state, e.g. one landmarker). ``options`` are whatever
    changes the output: their hash is recorded, and a rerun with other options redoes the input.
    The table of an input is written as ``<id><suffix>`` (``suffix`` may depend on the input), its id
    starting from ``stem(input)``. A failed input's record holds ``describe_error(exception)``.
    The progress display counts frames when ``frames_of`` estimates an input's frames (the stage
    reports them through :func:`dfe.runs.progress.frames_done`), else inputs, called ``unit``.
    """

    name: str  # the progress display's label, e.g. "extract"
    process: Callable[[WorkItem], StageResult]
    options: dict
    suffix: str | Callable[[Path], str]
    stem: Callable[[Path], str] = video_id  # the file name without its suffix
    describe_error: Callable[[BaseException], str] = error_sentence
    unit: str = "table"
    frames_of: Callable[[Path], int] | None = None

    def output(self, outdir: Path, path: Path, item_id: str) -> Path:
        """Where the table of input ``path`` with id ``item_id`` goes."""
        return outdir / f"{item_id}{self.suffix(path) if callable(self.suffix) else self.suffix}"


ENGINES = ("local", "ray")


@dataclass(frozen=True)
class Executor:
    """Where a stage's work runs: this process (``workers=1``), a spawn pool of ``workers``
    processes, or Ray (``engine="ray"``): one task per input on a local cluster or the one at
    ``ray_address``, writing to an output folder every task sees."""

    workers: int = 1
    engine: str = "local"
    ray_address: str | None = None

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise RunError(f"the engine must be {' or '.join(ENGINES)}, not {self.engine!r}")


@dataclass(frozen=True)
class WorkResult:
    """What one input came to in the process that worked on it (its table, if any, waits in the
    job's partial file for the driver to commit)."""

    frames: int = 0
    faces: int = 0
    error: str | None = None  # without ``failed``: the table is kept but the input counts as failed
    seconds: float = 0.0
    failed: bool = False  # no table: the stage raised, or its worker process died


WORKER_DIED = WorkResult(error="the worker process died while working on this input (a crash in a native library?)",
                         failed=True)


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
    def item(self) -> WorkItem:
        return WorkItem(self.path, self.rec.id)

    @property
    def partial(self) -> Path:
        return self.out.with_name(f".{self.out.stem}.partial-{os.getpid()}{self.out.suffix}")  # hidden until done


def _work(process: Callable[[WorkItem], StageResult], describe_error: Callable[[BaseException], str],
          item: WorkItem, partial: Path) -> WorkResult:
    """Run one input (in any process) and write its table to ``partial``. A worker never touches
    the manifest; the driver commits."""
    start = time.perf_counter()
    try:
        result = process(item)
        write_table(result.table, partial)
        crash_point("write")
        return WorkResult(result.frames, result.faces, result.error, time.perf_counter() - start)
    except Exception as e:  # noqa: BLE001 - one bad input must never stop the batch
        return WorkResult(error=describe_error(e), seconds=time.perf_counter() - start, failed=True)
    finally:
        progress.flush()


def _plan(manifest: Manifest, stage: Stage, inputs: list[Path], outdir: Path, opts: str,
          overwrite: bool) -> tuple[list[_Job], list[Outcome]]:
    """Assign ids, skip finished inputs and those another live run has claimed; the rest are
    claimed and become jobs, largest first. An input that cannot be resolved, stat'ed or read is
    its own failed record."""
    jobs, skipped = [], []
    for path in inputs:
        path = Path(path)
        key = input_key(path)
        rec = manifest.assign_id(key, stage.stem(path) or "input")
        try:
            out = stage.output(outdir, path, rec.id)
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


def _commit(manifest: Manifest, job: _Job, opts: str, result: WorkResult) -> Outcome:
    """Publish a job's table (if it has one) and record it."""
    before = manifest.get(job.rec.input) or job.rec  # the runs so far, as recorded (another run may have added one)
    common = dict(input=before.input, id=before.id, options=opts, seconds=round(result.seconds, 3),
                  version=dfe_version(), runs=before.runs + 1, finished=time.time())
    if result.failed:  # the input's fingerprint stays as last recorded
        rec = Record(**common, status="failed", size=before.size, mtime_ns=before.mtime_ns, sha256=before.sha256,
                     error=result.error)
    else:
        os.replace(job.partial, job.out)
        rec = Record(**common, status="failed" if result.error else "ok", output=str(job.out), size=job.size,
                     mtime_ns=job.mtime, sha256=job.sha, output_sha256=file_sha256(job.out), frames=result.frames,
                     faces=result.faces, error=result.error)
    manifest.put(rec)
    manifest.release([rec.input])
    manifest.write_report()
    if rec.status == "failed":
        log.error("%s: %s", job.path, rec.error)
    return Outcome(rec.input, rec.status, rec.id, rec.output, rec.frames, rec.faces, rec.seconds, rec.error)


@dataclass
class _Commits:
    """The driver's side of a batch: each finished input committed in the order inputs finish."""

    manifest: Manifest
    opts: str
    display: Progress
    count_inputs: bool  # the display counts inputs, not frames
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, job: _Job, result: WorkResult) -> None:
        self.outcomes.append(_commit(self.manifest, job, self.opts, result))
        if self.count_inputs:
            self.display.update(1)
        crash_point("after", len(self.outcomes))


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def run_stage(stage: Stage, inputs: Iterable[Path], outdir: str | Path, *, overwrite: bool = False,
              executor: Executor = Executor(), show_progress: bool = True) -> list[Outcome]:
    """Run ``stage`` over ``inputs`` into ``outdir`` with the manifest's naming and resume rules:
    one :class:`Outcome` per input.

    Tables are written atomically; one bad input never stops the others; ``overwrite`` redoes the
    inputs given. However the work is shared (``executor``), only this process writes the manifest,
    largest inputs start first, and one progress display covers the batch. What native libraries
    print while it runs goes to ``native.log`` in ``outdir`` (see :func:`dfe.extraction.io.quiet_native`).
    """
    manifest = Manifest(outdir)
    opts = options_hash(stage.options)
    display, jobs = None, []
    previous_log = os.environ.get(NATIVE_LOG_ENV)
    os.environ[NATIVE_LOG_ENV] = str(Path(outdir).resolve() / NATIVE_LOG)  # workers inherit it
    try:
        manifest.remove_stale_temp_files()
        jobs, skipped = _plan(manifest, stage, list(inputs), Path(outdir), opts, overwrite)
        frames = {j.path: stage.frames_of(j.path) for j in jobs} if stage.frames_of else {}
        total = sum(frames.values()) if stage.frames_of else len(jobs)
        display = Progress(total, stage.name, "frame" if stage.frames_of else stage.unit,
                           enabled=show_progress and bool(jobs))
        commits = _Commits(manifest, opts, display, count_inputs=stage.frames_of is None)
        if executor.engine == "ray":
            _run_ray(jobs, stage, commits, executor.ray_address, frames)
        elif executor.workers > 1 and len(jobs) > 1:
            _run_pool(jobs, stage, commits, executor.workers)
        else:
            _run_here(jobs, stage, commits)
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
    return skipped + commits.outcomes


def _run_here(jobs: list[_Job], stage: Stage, commits: _Commits) -> None:
    """One input after another in this process."""
    progress.set_sink(None if commits.count_inputs else commits.display.update)
    try:
        for job in jobs:
            commits.add(job, _work(stage.process, stage.describe_error, job.item, job.partial))
    finally:
        progress.set_sink(None)


def _run_pool(jobs: list[_Job], stage: Stage, commits: _Commits, workers: int) -> None:
    """A spawn process pool. If a worker dies (a native crash), the inputs it may have held are
    retried one at a time in fresh pools, so only the input that kills its worker is failed."""
    import multiprocessing as mp
    import queue
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")  # no inherited threads or landmarker state
    sink = ctx.Queue()  # frame counts from the workers, handed over when each worker starts

    def drain():
        try:
            while True:
                commits.display.update(sink.get_nowait())
        except queue.Empty:
            pass

    batches, suspects = [(jobs, workers)], []
    while batches:
        todo, n = batches.pop(0)
        with ProcessPoolExecutor(max_workers=max(1, min(n, len(todo))), mp_context=ctx,
                                 initializer=_worker_init, initargs=(sink,)) as pool:
            pending = {pool.submit(_work, stage.process, stage.describe_error, j.item, j.partial): j for j in todo}
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
                        result = WORKER_DIED
                    commits.add(job, result)
        if not batches and suspects:
            batches, suspects = [([j], 1) for j in suspects], []
    drain()


def _worker_init(sink) -> None:
    """In each pool worker: send frame counts to the driver, and die with it (Linux), so a killed
    run leaves no workers behind."""
    import signal

    progress.set_sink(sink.put)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_ray(jobs: list[_Job], stage: Stage, commits: _Commits, address: str | None,
             frames: dict[Path, int]) -> None:
    """One Ray task per input; the display counts an input's frames (``frames``, counted once when the
    batch was planned) when it finishes."""
    try:
        import ray
    except ImportError:
        raise RunError("--engine ray needs Ray: pip install 'dfe[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    task = ray.remote(num_cpus=1)(_work)
    refs = {task.remote(stage.process, stage.describe_error, j.item, j.partial): j for j in jobs}
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            job = refs.pop(ref)
            commits.add(job, ray.get(ref))
            if job.path in frames:
                commits.display.update(frames[job.path])
