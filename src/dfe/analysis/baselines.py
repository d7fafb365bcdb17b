"""Your OpenFace or py-feat outputs as baselines beside dfe's tokens (``dfe evaluate-task --baseline``).

``openface:DIR``: OpenFace 2 ``FeatureExtraction`` CSVs (2.2, or the older style with a space after
every comma), one per video, named ``<video>.csv``; the per-frame columns used are the action
units, ``AU*_r`` (intensity) and ``AU*_c`` (presence), on frames with ``success == 1``.
``pyfeat:DIR``: py-feat ``Fex`` CSVs (``fex.to_csv``), one per video named ``<video>.csv``; a file
whose ``input`` column names several media (one CSV for a folder of photos) is split by each
input's file stem. The columns used are py-feat's ``AU01 .. AU43``, on rows where every one of them
is a number (py-feat writes NaN where it found no face). Every face row of a video counts.

A file is matched to dfe's tables by video id: its file stem is a table's stem (``clip07.csv`` ->
``clip07.parquet``). Each video is summarised with the blendshape baseline's functionals
(:class:`dfe.analysis.features.BlendshapeFunctionals`: per column mean, std, 10th/50th/90th percentiles and the
share of frames above 0.5), so the baseline differs from dfe's AU-like row only in whose per-frame
numbers it summarises. Functionals fit nothing, so they are computed once per video, outside the
cross-validation folds, without leaking anything from test videos.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dfe.analysis.features import BlendshapeFunctionals, functional_names
from dfe.analysis.task import VideoFeatures
from dfe.errors import DfeError
from dfe.extraction.openface import OpenFaceError, read_openface

KINDS = ("openface", "pyfeat")
OPENFACE_AU = re.compile(r"^AU\d+_[rc]$")  # AU01_r, AU45_c (not dfe's AU12_r_blendshapes)
PYFEAT_AU = re.compile(r"^AU\d+$")  # AU01 .. AU43


class BaselineError(DfeError, ValueError):
    """A --baseline that cannot be used at all (one sentence naming it)."""


@dataclass(frozen=True)
class BaselineSpec:
    """``KIND:PATH`` as given on the command line: a folder of CSVs (or one CSV)."""

    kind: str
    path: Path

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.path}"


@dataclass
class BaselineFrames:
    """One tool's per-frame action units, by video id: each table has the AU ``columns`` and a
    ``success`` column (1 where the tool found a face); ``problems``: files that could not be used."""

    spec: BaselineSpec
    frames: dict[str, pd.DataFrame]
    columns: list[str]
    problems: list[str]


def parse_spec(text: str) -> BaselineSpec:
    """``openface:DIR`` or ``pyfeat:DIR`` (``py-feat:`` too). Raises :class:`BaselineError`."""
    kind, sep, path = text.partition(":")
    kind = kind.strip().lower().replace("-", "")
    if not sep or kind not in KINDS or not path:
        raise BaselineError(f"--baseline {text!r}: give openface:DIR or pyfeat:DIR (a folder of the tool's CSVs, "
                            "one per video, named after the video's table)")
    p = Path(path)
    if not p.exists():
        raise BaselineError(f"--baseline {text!r}: {p} does not exist")
    return BaselineSpec(kind, p)


def openface_frames(path: str | Path) -> pd.DataFrame:
    """An OpenFace CSV's action-unit columns (``AU*_r``, ``AU*_c``) and ``success``, every frame.
    Raises :class:`~dfe.extraction.openface.OpenFaceError` naming the file."""
    df = read_openface(path)
    cols = [c for c in df.columns if OPENFACE_AU.match(c)]
    if not cols:
        raise OpenFaceError(f"{path}: no action-unit columns (AU01_r ... AU45_c)")
    out = df[cols].apply(pd.to_numeric, errors="coerce")
    out["success"] = pd.to_numeric(df["success"], errors="coerce").fillna(0).astype(int)
    return out


def pyfeat_frames(path: str | Path) -> dict[str, pd.DataFrame]:
    """A py-feat CSV's AU columns and ``success`` (1 where every AU is a number), by video id: the
    file's stem, or each input's stem when its ``input`` column names several media. Raises
    ValueError naming the file."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"{path}: cannot read it as a py-feat CSV ({type(e).__name__})") from None
    df.columns = [str(c).strip() for c in df.columns]
    cols = [c for c in df.columns if PYFEAT_AU.match(c)]
    if not cols:
        raise ValueError(f"{path}: not a py-feat CSV (no AU01 ... AU43 columns)")
    out = df[cols].apply(pd.to_numeric, errors="coerce")
    out["success"] = np.isfinite(out[cols].to_numpy(float)).all(1).astype(int)
    inputs = df["input"].dropna().astype(str) if "input" in df.columns else pd.Series(dtype=str)
    if inputs.nunique() <= 1:
        return {path.stem: out}
    stems = df["input"].astype(str).map(lambda s: Path(s.replace("\\", "/")).stem)
    return {stem: part for stem, part in out.groupby(stems.to_numpy(), sort=True)}


def read_baseline_frames(spec: BaselineSpec, ids: list[str]) -> BaselineFrames:
    """The tool's per-frame AUs of the videos ``ids`` that have a file (unreadable files are named in
    ``problems`` and count as missing). Columns: those every video's file has."""
    files = sorted(spec.path.glob("*.csv")) if spec.path.is_dir() else [spec.path]
    wanted = set(ids)
    frames: dict[str, pd.DataFrame] = {}
    problems: list[str] = []
    for f in files:
        if spec.kind == "openface" and f.stem not in wanted:
            continue  # one video per OpenFace file: read only those of the tables given
        try:
            found = {f.stem: openface_frames(f)} if spec.kind == "openface" else pyfeat_frames(f)
        except ValueError as e:  # OpenFaceError is one
            problems.append(str(e))
            continue
        frames.update({vid: part for vid, part in found.items() if vid in wanted})
    common = sorted(set.intersection(*(set(v.columns) for v in frames.values())) - {"success"}) if frames else []
    order = {c: i for i, c in enumerate(next(iter(frames.values())).columns)} if frames else {}
    return BaselineFrames(spec, frames, sorted(common, key=order.get), problems)


def video_functionals(frames: dict[str, pd.DataFrame], columns: list[str], threshold: float = 0.5) -> pd.DataFrame:
    """One row per video: ``video`` then the blendshape baseline's functionals of ``columns`` over
    the frames with a face (``<column>_mean`` ... ``<column>_above_0.5``)."""
    ids = sorted(frames)
    values = BlendshapeFunctionals(threshold, columns).transform([frames[v] for v in ids]) if ids else \
        np.zeros((0, len(functional_names(columns, threshold))))
    out = pd.DataFrame(values, columns=functional_names(columns, threshold))
    out.insert(0, "video", ids)
    return out


def unmatched_note(spec: BaselineSpec, ids: list[str], matched: set[str], problems: list[str]) -> str | None:
    """One sentence naming the tables this baseline has no file for (None when it has them all)."""
    missing = [v for v in ids if v not in matched]
    if not missing:
        return None
    where = spec.path if spec.path.is_dir() else spec.path.parent
    example = f"e.g. {missing[0]!r}: no {where / (missing[0] + '.csv')}"
    if len(missing) > 1:
        example += f"; also {', '.join(repr(m) for m in missing[1:4])}{' ...' if len(missing) > 4 else ''}"
    bad = (f"; {len(problems)} of its files could not be used (e.g. {problems[0]})" if problems else "")
    return (f"{spec.label} has no usable file for {len(missing)} of {len(ids)} tables ({example}){bad}, "
            "so those videos are left out of the whole comparison and every row is scored on the same videos")


def load_baseline(text: str, ids: list[str], name: str | None = None) -> VideoFeatures:
    """``--baseline KIND:DIR`` for the tables ``ids``: per-video functionals of the tool's action
    units, and a note naming the tables without a file. Raises :class:`BaselineError` when no
    table has one."""
    spec = parse_spec(text)
    read = read_baseline_frames(spec, ids)
    if not read.frames and read.problems:
        raise BaselineError(f"--baseline {text}: no file for the {len(ids)} tables could be used "
                            f"(e.g. {read.problems[0]})")
    if not read.frames:
        example = ids[0] if ids else "VIDEO"
        raise BaselineError(f"--baseline {text}: no file matches any of the {len(ids)} tables by name "
                            f"(e.g. {example}.csv for the table {example})")
    if not read.columns:
        raise BaselineError(f"--baseline {text}: its files share no action-unit column")
    table = video_functionals(read.frames, read.columns)
    note = unmatched_note(spec, ids, set(read.frames), read.problems)
    name = name or f"{spec.kind} AU functionals ({spec.path.name or spec.path})"
    return VideoFeatures(name, table, [note] if note else [])


def load_baselines(texts: list[str], ids: list[str]) -> list[VideoFeatures]:
    """Every ``--baseline`` given, each named after its kind and folder (numbered if two names clash)."""
    out: list[VideoFeatures] = []
    for text in texts:
        b = load_baseline(text, ids)
        names = {o.name for o in out}
        if b.name in names:
            b.name = f"{b.name} #{sum(n.startswith(b.name) for n in names) + 1}"
        out.append(b)
    return out
