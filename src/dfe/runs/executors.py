"""How a stage runs over many inputs: plan against the manifest, work in one process, a process pool or Ray, commit each result."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from dfe.runs.manifest import Manifest, NATIVE_LOG, Outcome, Record, RunError, crash_point, dfe_version, file_sha256, input_key, options_hash, unreadable_reason
from dfe.runs import progress
from dfe.table import write_table
from dfe.extraction.io import NATIVE_LOG_ENV
from dfe.progress import Progress

log = logging.getLogger(__name__)


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
    it runs goes to ``native.log`` in ``outdir`` (see :func:`dfe.extraction.io.quiet_native`).
    """
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


