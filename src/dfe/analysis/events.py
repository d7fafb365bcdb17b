"""Facial events over time: when a code (or a blendshape) switches on, peaks and fades.

Definitions (docs/guide.md, Events, repeats them):

- **Active.** A code is active in a frame when it is one of the frame's tokens at any level, or
  only at levels ``<= levels`` when that is set. A blendshape is active by hysteresis on its
  score: it switches on at ``>= on`` (0.5) and stays on while ``>= off`` (0.3).
- **Strength.** The frame's measured psi projected on the code's own deformation: psi's
  least-squares multiple of the deformation times the deformation's peak, so it reads as the
  displacement of the code's peak vertex in cm (geometry psi). With the linear decoder a code's
  own contribution is constant, so the strength has to come from the measured psi. A
  blendshape's strength is its score.
- **Hold.** Neighbouring codes take turns from frame to frame. When the model is at hand, an
  event that has started stays on while the frame's strength for the code is at least ``hold``
  times the code's median strength over the track's frames where it is a token (hysteresis in
  strength: on when the code is a token, off when psi no longer shows it). Only codes that psi
  shows plainly are held: those whose median token strength is at least half their peak. Fine
  codes (small residual corrections) are not: psi's projection on them says little.
- **Events.** Runs of active (or held) frames of one code in one face track (ordered by
  timestamp). Runs separated by at most ``max_gap`` seconds are one event (hysteresis in time);
  an event shorter than ``min_duration`` seconds is flicker and is dropped. Onset is the first
  active frame's time, offset the last active frame's time plus one frame period, so a one-frame
  event lasts one frame period. The apex is the active frame of peak strength.
  ``onset_speed = (peak - strength at onset) / max(apex - onset, frame period)``;
  ``offset_speed = (peak - strength at the last frame) / max(offset - apex, frame period)``.
- **Resting.** A code active in at least ``resting_share`` of a track's frames is that track's
  resting state (often the person's neutral face): its events are kept and marked ``resting``.

Frames without a face (``success == 0``) are left out; the time they take still counts as a gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import pandas as pd

from dfe.table import BLENDSHAPE_COLUMNS, strength_columns, token_columns
from dfe.tokens.tables import table_psi

EVENT_COLUMNS = ["video", "face_id", "source", "code", "label", "level", "onset", "apex", "offset", "duration",
                 "peak_strength", "onset_speed", "offset_speed", "frames", "resting"]


@dataclass(frozen=True)
class EventOptions:
    levels: int | None = None  # a code is active when it appears at levels <= this (None: any level)
    max_gap: float = 0.1  # s: an absence this short does not end an event
    min_duration: float = 0.1  # s: shorter events are flicker and dropped
    resting_share: float = 0.5  # a code active in this share of a track's frames is its resting state
    hold: float | None = 0.9  # keep an event on while strength >= hold x the code's median token strength
    on: float = 0.5  # blendshape events: switch on at this score ...
    off: float = 0.3  # ... and stay on while the score is at least this

    @classmethod
    def raw(cls, **kw) -> "EventOptions":
        """No smoothing: every run of active frames is an event (to measure flicker)."""
        return cls(max_gap=0.0, min_duration=0.0, hold=None, **kw)


def frame_period(t: np.ndarray) -> float:
    """The typical time between frames (median step), 1/30 s for a single frame."""
    steps = np.diff(np.asarray(t, dtype=float))
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else 1 / 30


def duration(t: np.ndarray) -> float:
    """Seconds a run of frames covers: the span of its timestamps plus one frame period."""
    t = np.sort(np.asarray(t, dtype=float))
    return float(t[-1] - t[0] + frame_period(t)) if len(t) else 0.0


def segments(active_frames: np.ndarray, t: np.ndarray, max_gap: float, min_duration: float,
             dt: float | None = None) -> list[tuple[int, int]]:
    """Events of one code as (first, last) positions into ``t``, from the sorted positions of the
    frames where it is active. Gaps of at most ``max_gap`` s are bridged; events shorter than
    ``min_duration`` s are dropped (see the module's definitions)."""
    idx = np.asarray(active_frames, dtype=np.int64)
    if len(idx) == 0:
        return []
    t = np.asarray(t, dtype=float)
    dt = frame_period(t) if dt is None else dt
    eps = 1e-6
    absent = t[idx[1:]] - t[idx[:-1]] - dt  # time without the code between consecutive active frames
    breaks = np.flatnonzero(absent > max_gap + eps)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]])
    return [(int(s), int(e)) for s, e in zip(starts, ends) if t[e] - t[s] + dt >= min_duration - eps]


def hysteresis(start: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Schmitt trigger along axis 0: on where ``start``, and staying on while ``keep`` (or
    ``start``) holds; off as soon as neither does. Vectorised over frames (and columns)."""
    start, keep = np.asarray(start, dtype=bool), np.asarray(keep, dtype=bool)
    ok = start | keep
    idx = np.arange(len(ok)).reshape((-1,) + (1,) * (ok.ndim - 1))
    run_start = np.maximum.accumulate(np.where(~ok, idx + 1, 0), axis=0)
    last_start = np.maximum.accumulate(np.where(start, idx, -1), axis=0)
    return ok & (last_start >= run_start)


def code_frames(tokens: np.ndarray, levels: int | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For each code: the sorted frame positions where it is active and, per position, the
    coarsest level (1-based) it appears at."""
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.ndim != 2 or tokens.size == 0:
        return {}
    tokens = tokens[:, :levels] if levels else tokens
    n, K = tokens.shape
    frame = np.repeat(np.arange(n), K)
    level = np.tile(np.arange(1, K + 1), n)
    code = tokens.ravel()
    order = np.lexsort((level, frame, code))  # by code, then frame, coarsest level first
    code, frame, level = code[order], frame[order], level[order]
    first = np.ones(len(code), dtype=bool)
    first[1:] = (code[1:] != code[:-1]) | (frame[1:] != frame[:-1])
    code, frame, level = code[first], frame[first], level[first]
    bounds = np.flatnonzero(np.diff(code)) + 1
    return {int(c[0]): (f, lv) for c, f, lv in zip(np.split(code, bounds), np.split(frame, bounds), np.split(level, bounds))}


def _event_rows(t: np.ndarray, strength: np.ndarray, spans: list[tuple[int, int]], positions: np.ndarray,
                dt: float) -> list[dict]:
    """Timing and strength of each span; ``strength`` holds one value per active position."""
    rows = []
    for s, e in spans:
        inside = (positions >= s) & (positions <= e)
        pos, st = positions[inside], strength[inside]
        has = np.isfinite(st)
        k = int(np.argmax(np.where(has, st, -np.inf))) if has.any() else 0
        onset, offset, apex = t[s], t[e] + dt, t[pos[k]]
        peak = float(st[k]) if has.any() else np.nan
        rows.append({"onset": onset, "apex": apex, "offset": offset, "duration": offset - onset,
                     "peak_strength": peak,
                     "onset_speed": (peak - st[0]) / max(apex - onset, dt),
                     "offset_speed": (peak - st[-1]) / max(offset - apex, dt),
                     "frames": int(len(pos))})
    return rows


def track_events(t: np.ndarray, tokens: np.ndarray, strength: np.ndarray | None = None,
                 options: EventOptions = EventOptions(),
                 code_strength: Callable[[np.ndarray], np.ndarray] | None = None) -> pd.DataFrame:
    """Token events of one face track: ``t`` (n,) seconds ascending, ``tokens`` (n, K),
    ``strength`` (n, K) each token's strength in that frame (NaN when unknown), and
    ``code_strength(codes) -> ((n, len(codes)) strengths in every frame, (len(codes),) peaks)``
    (needs the model; gives strength outside the token frames and enables ``options.hold``)."""
    t = np.asarray(t, dtype=float)
    tokens = np.asarray(tokens, dtype=np.int64)
    if strength is None:
        strength = np.full(tokens.shape, np.nan)
    dt = frame_period(t)
    found = code_frames(tokens, options.levels)
    codes = np.fromiter(found, dtype=np.int64, count=len(found))
    full, peaks = code_strength(codes) if code_strength is not None and len(codes) else (None, None)
    rows = []
    for j, (code, (frames, level)) in enumerate(found.items()):
        on = frames
        if full is None:
            st = np.full(len(t), np.nan)
            st[frames] = strength[frames, level - 1]  # the same projection at whichever level the code sits
        else:
            st = full[:, j].astype(float)
            typical = float(np.median(st[frames]))
            if options.hold is not None and typical >= 0.5 * peaks[j]:
                start = np.zeros(len(t), dtype=bool)
                start[frames] = True
                on = np.flatnonzero(hysteresis(start, st >= options.hold * typical))
        resting = len(frames) >= options.resting_share * len(t)
        spans = segments(on, t, options.max_gap, options.min_duration, dt)
        for (s, e), row in zip(spans, _event_rows(t, st[on], spans, on, dt)):
            inside = (frames >= s) & (frames <= e)
            rows.append({"source": "tokens", "code": code, "label": f"code {code}",
                         "level": int(level[inside].min()), **row, "resting": resting})
    return _frame_of(rows)


def blendshape_track_events(t: np.ndarray, scores: np.ndarray, names: list[str],
                            options: EventOptions = EventOptions()) -> pd.DataFrame:
    """Events of each blendshape in one face track (the dynamic AU-like baseline)."""
    t = np.asarray(t, dtype=float)
    scores = np.asarray(scores, dtype=float)
    active = hysteresis(scores >= options.on, scores >= options.off)
    dt = frame_period(t)
    rows = []
    for j, name in enumerate(names):
        frames = np.flatnonzero(active[:, j])
        if not len(frames):
            continue
        spans = segments(frames, t, options.max_gap, options.min_duration, dt)
        resting = len(frames) >= options.resting_share * len(t)
        for row in _event_rows(t, scores[frames, j], spans, frames, dt):
            rows.append({"source": "blendshapes", "code": j, "label": name, "level": 0, **row, "resting": resting})
    return _frame_of(rows)


def _frame_of(rows: list[dict]) -> pd.DataFrame:
    cols = [c for c in EVENT_COLUMNS if c not in ("video", "face_id")]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["onset", "level", "code"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------- tables in, events out

def _strength_and_peaks(model, psi: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    deformations = model.code_deformations()
    return model.code_strength(psi, codes, deformations), model.code_peaks(deformations)[codes]


def _tracks(df: pd.DataFrame):
    ok = df[df["success"] == 1]
    for face, track in ok.groupby("face_id", sort=True):
        yield face, track.sort_values("timestamp", kind="stable")


def _video_of(df: pd.DataFrame) -> str:
    if "video" in df.columns and len(df):
        return str(df["video"].iloc[0])
    from pathlib import Path

    return Path(str(df["file"].iloc[0])).stem if "file" in df.columns and len(df) else ""


def _tagged(parts: list[pd.DataFrame], video: str) -> pd.DataFrame:
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=EVENT_COLUMNS[1:])
    out.insert(0, "video", video)
    return out[EVENT_COLUMNS]


def token_events(df: pd.DataFrame, model=None, options: EventOptions = EventOptions()) -> pd.DataFrame:
    """Events of every code in an encoded per-frame table, one row per event (``EVENT_COLUMNS``).

    With ``model`` (the :class:`~dfe.tokens.tokenizer.Tokenizer` that encoded the table) strength is
    measured in every frame and events are held (``options.hold``). Without it, strength comes
    from the table's ``strength_k`` columns (written by ``dfe encode``; token frames only, no
    hold); tables from dfe 0.2 and older have none, so strength is NaN and the apex is the onset."""
    tok_cols = token_columns(df)
    if not tok_cols:
        raise ValueError("table has no token columns (tok_1 ...): run `dfe encode` first")
    str_cols = strength_columns(df)
    parts = []
    for face, track in _tracks(df):
        tokens = track[tok_cols].to_numpy(np.int64)
        strength, code_strength = None, None
        if model is not None:  # strength of every used code in every frame (the tokens' own among them)

            code_strength = partial(_strength_and_peaks, model, table_psi(track, model.config.psi_kind))
        elif len(str_cols) == len(tok_cols):
            strength = track[str_cols].to_numpy(float)
        ev = track_events(track["timestamp"].to_numpy(float), tokens, strength, options, code_strength)
        ev.insert(0, "face_id", face)
        parts.append(ev)
    return _tagged(parts, _video_of(df))


def blendshape_events(df: pd.DataFrame, options: EventOptions = EventOptions()) -> pd.DataFrame:
    """Events of the 52 blendshape scores (hysteresis ``options.on``/``options.off``)."""
    parts = []
    for face, track in _tracks(df):
        ev = blendshape_track_events(track["timestamp"].to_numpy(float), track[BLENDSHAPE_COLUMNS].to_numpy(float),
                                     BLENDSHAPE_COLUMNS, options)
        ev.insert(0, "face_id", face)
        parts.append(ev)
    return _tagged(parts, _video_of(df))


def name_events(events: pd.DataFrame, names: dict) -> pd.DataFrame:
    """Add a ``name`` column: each token event's code in words (:mod:`dfe.views.naming`; ``names`` maps
    a code to a :class:`~dfe.views.naming.CodeName` or a string); blendshape events keep their label."""
    out = events.copy()
    words = {int(c): getattr(n, "name", n) for c, n in names.items()}
    out["name"] = [words.get(int(c), "") if src == "tokens" else lab
                   for c, src, lab in zip(out["code"], out["source"], out["label"])]
    return out


# ---------------------------------------------------------------------------- a corpus of tables

