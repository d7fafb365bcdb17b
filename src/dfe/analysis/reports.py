"""Pieces every report is made of: a DataFrame as a markdown table, a bar chart of scores, and
matplotlib without a display.

Analysis writes its reports (``dfe evaluate``, ``dfe evaluate-task``) with these, not through
:mod:`dfe.views` (docs/architecture.md, rule 5); the views draw with the same helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def agg_pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no display), imported on first use so
    that importing dfe stays fast."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, **savefig) -> Path:
    """Write a figure (making its folder) with ``fig.savefig(path, **savefig)``, then close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **savefig)
    agg_pyplot().close(fig)
    return path


def markdown_table(df: pd.DataFrame) -> str:
    """A DataFrame as a markdown table, one row per row: floats to three decimals, every other
    value as ``str`` writes it (integers stay integers)."""
    def cell(v) -> str:
        return f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def bar_chart(path: str | Path, labels: Sequence[str], values: Sequence[float], *,
              errors: np.ndarray | Sequence | None = None, colours: Sequence[str] | str = "#4c72b0",
              chance: float | None = None, chance_label: str | None = None, xlabel: str = "", title: str = "",
              show_values: bool = False) -> Path:
    """Scores as horizontal bars, the first label on top, on an axis up to 1.

    ``errors``: one length per bar (drawn both ways) or a pair of sequences (below, above).
    ``chance``: a dashed red line, labelled ``chance_label`` (default ``chance (0.50)``).
    ``show_values``: each score written inside its bar. The axis starts at 0, or lower when a bar
    or its error bar goes below 0.
    """
    plt = agg_pyplot()
    values = np.asarray(values, dtype=float)
    below = np.zeros_like(values) if errors is None else np.broadcast_to(
        np.asarray(errors, dtype=float), (2, len(values)))[0]
    fig, ax = plt.subplots(figsize=(8.5, 1.3 + 0.42 * len(values)), dpi=100)
    ax.barh(list(labels), values, xerr=errors, color=colours, capsize=3)
    if chance is not None:
        ax.axvline(chance, color="#c0392b", ls="--", lw=1.3, label=chance_label or f"chance ({chance:.2f})")
        ax.legend(loc="lower right", fontsize=8)
    if show_values:
        for y, v in enumerate(values):
            ax.text(0.01, y, f"{v:.2f}", va="center", ha="left", color="white", fontsize=8, fontweight="bold")
    ax.set_xlim(min(0.0, float(np.nanmin(values - below)) - 0.05) if len(values) else 0.0, 1.0)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)
