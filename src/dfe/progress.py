"""One progress display for every long command (it imports nothing of dfe, so any layer may show it).

:class:`Progress` is the display: on a terminal a tqdm bar with an ETA; anywhere else (a log file,
a batch job) plain lines, one at least every ``interval`` seconds (30 by default,
``DFE_PROGRESS_INTERVAL`` to change it) even while nothing moves, and a closing line with what was
done. Counts from worker processes reach it through :mod:`dfe.runs.progress`, which also words
the end of a batch.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Iterable

INTERVAL_ENV = "DFE_PROGRESS_INTERVAL"









def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _plural(n: int, unit: str) -> str:
    return f"{n:,} {unit}" + ("" if n == 1 or unit.endswith("s") else "s")


def default_interval() -> float:
    try:
        return max(float(os.environ.get(INTERVAL_ENV, "30")), 0.01)
    except ValueError:
        return 30.0


def _own_stream(stream):
    """A private copy of the process's standard error when ``stream`` is it: lines written from the
    display's thread never land where native libraries' noise is sent for a moment (see
    :func:`dfe.extraction.io.quiet_native`)."""
    try:
        if stream is sys.__stderr__ and stream.fileno() == 2:
            return os.fdopen(os.dup(2), "w", buffering=1), True
    except (OSError, ValueError, AttributeError):
        pass
    return stream, False


class Progress:
    """``total`` units (frames, tables, epochs, codes, fits) of one command.

    ``update(n)`` counts; ``note(text)`` sets a short status shown with the count (e.g. the
    held-out error of a fit); ``close()`` ends it with a line saying what was done. ``total`` is an
    estimate where it has to be (frames of videos): the closing line never reports it as a shortfall.
    """

    def __init__(self, total: int, desc: str, unit: str = "frame", enabled: bool = True,
                 interval: float | None = None, stream=None):
        self.total, self.desc, self.unit, self.enabled = max(int(total or 0), 0), desc, unit, enabled
        self.interval = default_interval() if interval is None else interval
        self.stream, self._owned = _own_stream(stream or sys.stderr) if enabled else (stream or sys.stderr, False)
        self.done, self.text = 0, ""
        self.start = self.last = time.perf_counter()
        self.bar = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self.closed = False
        if not enabled:
            return
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total or None, desc=desc, unit=unit, file=self.stream, smoothing=0.1)
        else:
            self._thread = threading.Thread(target=self._tick, name=f"dfe-progress-{desc}", daemon=True)
            self._thread.start()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _tick(self) -> None:
        while not self._stop.wait(max(self.interval - (time.perf_counter() - self.last), 0.005)):
            if time.perf_counter() - self.last >= self.interval:
                self.line()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def note(self, text: str) -> None:
        self.text = text
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def line(self) -> None:
        """One plain line: done of total, rate, ETA and the note."""
        with self._lock:
            self.last = now = time.perf_counter()
            done, elapsed = self.done, now - self.start
        rate = done / max(elapsed, 1e-9)
        if self.total:
            shown = min(done, self.total)
            text = f"{shown:,}/{_plural(self.total, self.unit)} ({shown / self.total:.0%})"
        else:
            text = _plural(done, self.unit)
        if done:
            text += f", {rate:.1f} {self.unit}s/s" if rate < 10 else f", {rate:.0f} {self.unit}s/s"
        if self.total and 0 < rate and done < self.total:
            text += f", ETA {_duration((self.total - done) / rate)}"
        text += f", {_duration(elapsed)} so far" + (f"; {self.text}" if self.text else "")
        self._print(f"{self.desc}: {text}")

    def _print(self, text: str) -> None:
        try:
            print(text, file=self.stream, flush=True)
        except (ValueError, OSError):  # the stream was closed under us (a test runner's capture)
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            elapsed = _duration(time.perf_counter() - self.start)
            self._print(f"{self.desc}: finished, {_plural(self.done, self.unit)} in {elapsed}"
                        + (f"; {self.text}" if self.text else ""))
        if self._owned:
            self.stream.close()


def counted(iterable: Iterable, total: int, desc: str, unit: str, enabled: bool = True):
    """Iterate with a :class:`Progress` (closed when the loop ends or breaks)."""
    with Progress(total, desc, unit, enabled) as bar:
        for item in iterable:
            yield item
            bar.update(1)


# ---------------------------------------------------------------------- the end of a batch





