"""The end of a batch in words, and where worker processes' frame counts go."""

from __future__ import annotations

from typing import Callable
from dfe.progress import _plural


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


def summary(outcomes: list, noun: str = "input", verb: str = "ok") -> str:
    """The closing sentence of a batch, e.g. ``Finished 6 inputs: 4 ok, 1 up to date, 1 failed,
    0 skipped; 1 has no face in any frame.`` (``skipped``: another live run is working on them)."""
    n = len(outcomes)
    count = {s: sum(getattr(o, "status", "") == s for o in outcomes) for s in ("ok", "skipped", "failed", "claimed")}
    text = (f"Finished {_plural(n, noun)}: {count['ok']} {verb}, {count['skipped']} up to date, "
            f"{count['failed']} failed, {count['claimed']} skipped")
    if count["claimed"]:
        text += " (another dfe run is working on them)"
    faceless = len(faceless_inputs(outcomes))
    if faceless:
        text += f"; {faceless} {'has' if faceless == 1 else 'have'} no face in any frame"
    return text + "."


def faceless_inputs(outcomes: list) -> list[str]:
    """Inputs done (now or before) with frames but no face in any of them."""
    return [o.input for o in outcomes
            if getattr(o, "status", "") in ("ok", "skipped") and getattr(o, "frames", 0) and not getattr(o, "faces", 0)]


def faceless_warning(outcomes: list) -> str | None:
    """One line naming every input without a face, or None."""
    names = faceless_inputs(outcomes)
    if not names:
        return None
    return f"warning: no face in any frame of {len(names)} input{'s' if len(names) > 1 else ''}: {', '.join(names)}"
