"""ELAN (.eaf) files: dfe's events as tiers beside a researcher's own coding, and their tiers read
back as labels. The format is handled by pympi-ling (``pympi.Elan``); times are milliseconds.

Tier layouts written by :func:`write_eaf`:

- ``code``: one tier per code that has events (``code 17``, or its name), so events never overlap
  within a tier; resting codes get `` (resting)`` after the name.
- ``level``: one tier per level (``dfe level 1`` ...), each event on the tier of the coarsest
  level its code took in it. ELAN tiers hold no overlapping annotations, so where two events of
  one level overlap, the earlier one is cut at the later one's onset.

Each annotation's value is the event's label and, when the code is named, its name, e.g.
``code 17: lip corners pulled up and out`` (the events table has the rest).
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

import numpy as np
import pandas as pd

from dfe.errors import DfeError
from dfe.table import window_id

UNANNOTATED = "none"


class ElanError(DfeError, ValueError):
    pass


def _ms(seconds: float) -> int:
    return int(round(float(seconds) * 1000))


def _level_spans(events: pd.DataFrame) -> list[tuple[str, int, int, str]]:
    out = []
    for level, ev in events.groupby("level", sort=True):
        rows = [(_ms(a), _ms(b), _value(lab, name)) for a, b, lab, name in zip(ev["onset"], ev["offset"], ev["label"],
                                                                             _names(ev))]
        rows.sort()
        for i, (a, b, lab) in enumerate(rows):
            end = min(b, rows[i + 1][0]) if i + 1 < len(rows) else b
            if end > a:
                out.append((f"dfe level {level}", a, end, lab))
    return out


def _value(label: str, name) -> str:
    """An annotation's text: ``code 17``, or ``code 17: lip corners pulled up and out`` when named."""
    return f"{label}: {name}" if isinstance(name, str) and name and name not in ("unnamed", label) else str(label)


def _names(events: pd.DataFrame):
    return events["name"] if "name" in events.columns else [None] * len(events)


def _code_spans(events: pd.DataFrame) -> list[tuple[str, int, int, str]]:
    out = []
    for a, b, lab, name, resting in zip(events["onset"], events["offset"], events["label"], _names(events),
                                        events["resting"]):
        if _ms(b) > _ms(a):
            out.append((str(lab) + (" (resting)" if bool(resting) else ""), _ms(a), _ms(b), _value(lab, name)))
    return out


def write_eaf(events: pd.DataFrame, path: str | Path, media: str | None = None, tiers: str = "code") -> Path:
    """Write one video's events as an ELAN file (``tiers``: ``code`` or ``level``), linked to
    ``media`` when given, and check it by reading it back."""
    from pympi.Elan import Eaf

    if tiers not in ("code", "level"):
        raise ValueError("tiers must be 'code' or 'level'")
    eaf = Eaf(author="dfe")
    eaf.remove_tier("default")
    if media:
        eaf.add_linked_file(str(Path(media).resolve()), relpath=Path(media).name,
                            mimetype=mimetypes.guess_type(str(media))[0] or "video/*")
    spans = _code_spans(events) if tiers == "code" else _level_spans(events)
    for tier in dict.fromkeys(s[0] for s in spans):
        eaf.add_tier(tier)
    for tier, a, b, value in spans:
        eaf.add_annotation(tier, a, b, value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.eaf")  # pympi keeps a .bak of a file it overwrites
    tmp.unlink(missing_ok=True)
    eaf.to_file(str(tmp))
    back = read_eaf(tmp)
    if len(back) != len(spans):
        raise ElanError(f"{path}: wrote {len(spans)} annotations but read back {len(back)}")
    os.replace(tmp, path)
    return path


def read_eaf(path: str | Path) -> pd.DataFrame:
    """Every annotation of an ELAN file: ``tier, start, end`` (seconds) and ``value``."""
    from pympi.Elan import Eaf

    path = Path(path)
    try:
        eaf = Eaf(str(path))
    except Exception as e:  # pympi raises whatever the XML parser raises
        raise ElanError(f"{path}: not a readable ELAN file ({e})") from None
    rows = []
    for tier in eaf.get_tier_names():
        for ann in eaf.get_annotation_data_for_tier(tier):
            rows.append({"tier": tier, "start": ann[0] / 1000, "end": ann[1] / 1000, "value": ann[2]})
    return pd.DataFrame(rows, columns=["tier", "start", "end", "value"])


def find_eafs(labels: str | Path) -> list[Path]:
    p = Path(labels)
    found = sorted(p.glob("*.eaf")) if p.is_dir() else [p]
    if not found:
        raise FileNotFoundError(f"no .eaf files in {p}")
    return found


def is_eaf_labels(labels: str | Path) -> bool:
    p = Path(labels)
    return p.suffix.lower() == ".eaf" or (p.is_dir() and any(p.glob("*.eaf")))


def window_label(annotations: pd.DataFrame, start: float, end: float) -> str:
    """The value covering most of [start, end); unannotated time counts as ``none``."""
    cover: dict[str, float] = {UNANNOTATED: 0.0}
    for a, b, v in zip(annotations["start"], annotations["end"], annotations["value"]):
        cover[v] = cover.get(v, 0.0) + max(0.0, min(b, end) - max(a, start))
    cover[UNANNOTATED] = (end - start) - sum(cover.values())
    return max(cover, key=cover.get)


def eaf_labels(labels: str | Path, tier: str, window: float | None = None,
               durations: dict[str, float] | None = None) -> pd.DataFrame:
    """Labels from ELAN files (one per video, named after the video's table): per video, or per
    ``window`` seconds (ids ``video@k``, as ``dfe evaluate-task --window`` cuts them), the value of
    ``tier`` covering most of it (``none`` where nothing is annotated). ``durations``: each video's
    length in seconds (default: up to its last annotation)."""
    rows = []
    for path in find_eafs(labels):
        ann = read_eaf(path)
        if tier not in set(ann["tier"]):
            tiers = ", ".join(sorted(set(ann["tier"]))) or "none"
            raise ElanError(f"{path}: no tier {tier!r} (tiers: {tiers})")
        ann = ann[ann["tier"] == tier]
        video = path.stem
        length = (durations or {}).get(video, float(ann["end"].max()) if len(ann) else 0.0)
        if window:
            for k in range(int(np.ceil(length / window))):
                rows.append({"video": window_id(video, k), tier: window_label(ann, k * window, min((k + 1) * window, length))})
        else:
            rows.append({"video": video, tier: window_label(ann, 0.0, length)})
    return pd.DataFrame(rows, columns=["video", tier])
