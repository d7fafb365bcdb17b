"""One progress display for a whole corpus, fed by frames from any process.

Stages call :func:`frames_done` as they go (cheap, a no-op when nobody listens); the runner
decides where the counts go: straight to the display in a one-process run, through a queue from
worker processes. On a terminal the display is a tqdm bar over frames with an ETA; elsewhere (a
log file, a batch job) it writes one plain line every ``interval`` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

_sink: Callable[[int], None] | None = None
_pending = 0
_BATCH = 25  # frames per message from a worker


def set_sink(sink: Callable[[int], None] | None) -> None:
    """Where this process's frame counts go (None: nowhere)."""
    global _sink, _pending
    flush()
    _sink, _pending = sink, 0


def frames_done(n: int = 1) -> None:
    global _pending
    if _sink is None:
        return
    _pending += n
    if _pending >= _BATCH:
        flush()


def flush() -> None:
    global _pending
    if _sink is not None and _pending:
        _sink(_pending)
    _pending = 0


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class CorpusProgress:
    """Frames done out of ``total`` for a whole run."""

    def __init__(self, total: int, desc: str, enabled: bool = True, interval: float = 30.0, stream=None):
        self.total, self.desc, self.enabled, self.interval = max(int(total), 0), desc, enabled, interval
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = self.last = time.perf_counter()
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total or None, desc=desc, unit="frame", file=self.stream, smoothing=0.1)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.perf_counter() - self.last >= self.interval:
            self.line()

    def line(self) -> None:
        self.last = now = time.perf_counter()
        rate = self.done / max(now - self.start, 1e-9)
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        eta = f", ETA {_duration((self.total - self.done) / rate)}" if self.total and rate > 0 else ""
        print(f"{self.desc}: {self.done:,}/{self.total:,} frames{share}, {rate:.0f} frames/s{eta}",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.done:
            self.line()
