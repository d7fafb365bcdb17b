"""A timeline figure per video: which codes are on when (coarse levels on top), with a few frames
as thumbnails, and optional reference intervals (e.g. a researcher's own coding) shaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dfe.analysis.reports import agg_pyplot, save_figure
from dfe.extraction.action_units import (PRESENCE_THRESHOLDS, PRESENCE_THRESHOLDS_REFERENCE, UNIT_NAMES,
                                         measured_from_real_neutral)
from dfe.extraction.openface import add_action_units
from dfe.table import OPENFACE_AU_INTENSITY
from dfe.views.figures import read_row_face_crop

LEVEL_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def timeline_rows(events: pd.DataFrame, max_rows: int = 24) -> list[str]:
    """Labels to draw, one row each: coarse levels first (a code's coarsest level), within a level
    the codes with the most time in events; drawn in that level order, then by first onset."""
    if events.empty:
        return []
    per = events.groupby("label").agg(total=("duration", "sum"), level=("level", "min"), first=("onset", "min"))
    keep = per.sort_values(["level", "total"], ascending=[True, False]).head(max_rows)
    return list(keep.sort_values(["level", "first"]).index)


def timeline_note(events: pd.DataFrame, max_rows: int = 24) -> str:
    """What the figure leaves out, and how to draw it: '' when every code has its row."""
    n = int(events["label"].nunique()) if len(events) else 0
    if n <= max_rows:
        return ""
    return (f"{max_rows} of {n} codes drawn (coarse levels first, then most time in events); "
            f"all of them: dfe events ... --max-rows {n}")


def legend_levels(events: pd.DataFrame) -> list[int]:
    """The levels whose colour appears among these (drawn, not resting) events."""
    if events.empty:
        return []
    return sorted({int(v) for v in events.loc[~events["resting"].astype(bool), "level"]})


def strength_rank(events: pd.DataFrame) -> pd.Series:
    """Each event's |peak strength| as a rank among the events, 0 (weakest) to 1 (strongest):
    one outlier cannot wash every other bar out to one shade."""
    s = events["peak_strength"].abs()
    if s.notna().sum() <= 1:
        return pd.Series(1.0, index=events.index)
    return ((s.rank(method="average") - 1) / max(s.notna().sum() - 1, 1)).fillna(1.0)


def bar_colours(events: pd.DataFrame) -> dict:
    """{event index: RGBA}: the level's colour (grey for resting), light for weak events and dark
    for strong ones (:func:`strength_rank`)."""
    from matplotlib.colors import to_rgb

    rank = strength_rank(events)
    out = {}
    for i, ev in events.iterrows():
        base = np.array(to_rgb("0.45" if ev["resting"] else LEVEL_COLOURS[(int(ev["level"]) - 1) % len(LEVEL_COLOURS)]))
        t = float(rank[i])
        rgb = (1 - (0.25 + 0.75 * t)) * np.ones(3) + (0.25 + 0.75 * t) * base * (1 - 0.35 * t)
        out[i] = (*np.clip(rgb, 0, 1), 1.0)
    return out


def thumbnail_times(table: pd.DataFrame, n: int = 6) -> list[pd.Series]:
    """``n`` frames with a face, evenly spread over the video."""
    ok = table[table["success"] == 1].sort_values("timestamp")
    if ok.empty:
        return []
    picks = np.unique(np.linspace(0, len(ok) - 1, n).round().astype(int))
    return [ok.iloc[i] for i in picks]


def timeline_figure(events: pd.DataFrame, table: pd.DataFrame, path: str | Path, title: str = "",
                    max_rows: int = 24, thumbnails: int = 6, marks: pd.DataFrame | None = None) -> Path:
    """Draw events (one row per code) over the video's time, thumbnails above. ``marks``:
    reference intervals with columns ``label, start, end`` (seconds), shaded behind the bars."""
    plt = agg_pyplot()
    rows = timeline_rows(events, max_rows)
    shots = [(r, read_row_face_crop(r)) for r in thumbnail_times(table, thumbnails)] if thumbnails else []
    shots = [(r, img) for r, img in shots if img is not None]
    t = table["timestamp"].to_numpy(float)
    t0, t1 = (float(t.min()), float(t.max()) + 1 / 30) if len(t) else (0.0, 1.0)
    height = 1.2 + 0.28 * max(len(rows), 3) + (1.6 if shots else 0)
    fig = plt.figure(figsize=(12, height))
    grid = fig.add_gridspec(2 if shots else 1, max(len(shots), 1),
                            height_ratios=[1.8, 0.28 * max(len(rows), 3) + 0.6] if shots else None, hspace=0.12)
    for i, (row, img) in enumerate(shots):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(img)
        ax.set_title(f"{row['timestamp']:.1f} s", fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(grid[-1, :])
    y_of = {lab: i for i, lab in enumerate(rows)}
    if marks is not None:
        for lab, a, b in zip(marks["label"], marks["start"], marks["end"]):
            ax.axvspan(a, b, color="0.85", zorder=0)
            ax.text((a + b) / 2, -0.75, str(lab), ha="center", va="center", fontsize=9, color="0.25")
    drawn = events[events["label"].isin(y_of)]
    colours = bar_colours(drawn)
    for i, ev in drawn.iterrows():
        y = y_of[ev["label"]]
        ax.barh(y, ev["duration"], left=ev["onset"], height=0.7, color=colours[i], zorder=2)
        if np.isfinite(ev["apex"]):
            ax.plot([ev["apex"]] * 2, [y - 0.35, y + 0.35], color="k", lw=0.8, zorder=3)
    for row, _ in shots:
        ax.axvline(row["timestamp"], color="0.5", ls=":", lw=0.8, zorder=1)
    levels = events.groupby("label")["level"].min() if len(events) else pd.Series(dtype=int)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"L{int(levels[lab])}  {lab}" if levels.get(lab, 0) > 0 else str(lab) for lab in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5 if rows else 0.5, -1.0 if marks is not None else -0.5)
    ax.set_xlim(t0, t1)
    ax.set_xlabel("time (s)", loc="left")  # the legend sits on the right, below the axis
    ax.grid(axis="x", alpha=0.3)
    shown = legend_levels(drawn)
    handles = [plt.Rectangle((0, 0), 1, 1, color=LEVEL_COLOURS[(k - 1) % len(LEVEL_COLOURS)]) for k in shown]
    names = [f"level {k}" for k in shown]
    if len(drawn) and drawn["resting"].astype(bool).any():
        handles.append(plt.Rectangle((0, 0), 1, 1, color="0.45"))
        names.append("resting")
    if len(drawn) > 1:
        ramp = [plt.Rectangle((0, 0), 1, 1, color=c) for c in
                bar_colours(pd.DataFrame({"peak_strength": [0.0, 1.0], "level": [shown[0] if shown else 1] * 2,
                                          "resting": [False, False]})).values()]
        handles += ramp
        names += ["weakest", "strongest (peak strength, ranked)"]
    if handles:
        ax.legend(handles, names, loc="upper right", bbox_to_anchor=(1.0, -0.045), fontsize=8, ncol=len(handles), frameon=False)
    note = timeline_note(events, max_rows)
    ax.set_title("events: bar from onset to offset, tick at the apex, darker = stronger; "
                 "row label = the code's coarsest level" + (f"\n{note}" if note else ""), fontsize=9, loc="left")
    if title:
        fig.suptitle(title, fontsize=11, x=0.02, y=0.99 if not shots else 0.93, ha="left")
    return save_figure(fig, path, dpi=110, bbox_inches="tight")


def action_unit_figure(table: pd.DataFrame, path: str | Path, title: str = "", face_id: int = 0,
                       units: list[str] | None = None) -> Path:
    """AU intensity traces over a video's time (one small panel per unit, geometry source solid,
    blendshape source dashed, the presence threshold dotted); ``units`` default: OpenFace's 17."""
    plt = agg_pyplot()
    df = add_action_units(table)
    df = df[(df["success"] == 1) & (df["face_id"] == face_id)].sort_values("timestamp")
    units = [u for u in (units or OPENFACE_AU_INTENSITY) if np.isfinite(df[f"{u}_r"]).any()]
    fig, axes = plt.subplots(len(units), 1, figsize=(10, 0.62 * len(units) + 0.8), sharex=True, squeeze=False)
    t = df["timestamp"].to_numpy(float)
    top = max(float(np.nanmax(df[[f"{u}_r" for u in units]].to_numpy())), 0.1)
    real = measured_from_real_neutral(df["neutral_source"]) if "neutral_source" in df else np.zeros(len(df), bool)
    thresholds = PRESENCE_THRESHOLDS_REFERENCE if real.mean() > 0.5 else PRESENCE_THRESHOLDS
    for ax, au in zip(axes[:, 0], units):
        ax.plot(t, df[f"{au}_r"], color="#1f77b4", lw=1.2)
        if np.isfinite(df[f"{au}_r_blendshapes"]).any():
            ax.plot(t, df[f"{au}_r_blendshapes"], color="#ff7f0e", lw=0.9, ls="--")
        if au in thresholds:
            ax.axhline(thresholds[au], color="0.5", lw=0.7, ls=":")
        ax.set_ylim(0, top * 1.05)
        ax.set_ylabel(f"{au}\n{UNIT_NAMES[au]}", rotation=0, ha="right", va="center", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.spines[["top", "right"]].set_visible(False)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(f"{title}  action units, cm of peak movement: geometry (solid), blendshapes (dashed), "
                 "presence threshold (dotted)", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return save_figure(fig, path, dpi=110)
