"""`dfe demo`: the whole idea on one face in under a minute, offline, with the starter model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from dfe.tokens.tokenizer import Tokenizer
from dfe.tokens.tables import encode_table
from dfe.extraction.pipeline import ExtractOptions
from dfe.runs.extract import extract
from dfe.table import read_table, token_columns, write_table
from dfe.views.atlas import build_atlas
from dfe.views.figures import decomposition_figure

log = logging.getLogger(__name__)


def starter_model_path() -> Path:
    """The small starter tokenizer shipped inside the package."""
    return Path(str(files("dfe") / "data" / "starter.dfe"))


def load_starter():
    return Tokenizer.load(starter_model_path())


def astronaut_image(outdir: Path) -> Path:
    """scikit-image's public-domain `astronaut` photo (NASA), written as a PNG."""
    import cv2
    from skimage import data

    path = outdir / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


@dataclass
class DemoResult:
    input: Path
    table: Path
    decomposition: Path
    atlas: Path
    faces: int
    tokens: list[int]


def run_demo(outdir: str | Path, media: str | Path | None = None, model: str | Path | None = None) -> DemoResult:
    """extract -> encode -> decomposition PNG -> atlas HTML on ``media`` (default: the astronaut)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    media = Path(media) if media else astronaut_image(outdir)
    tok = Tokenizer.load(model) if model else load_starter()
    report = extract([media], outdir / "tables", ExtractOptions(overwrite=True, progress=True))
    if report.failed:
        raise ValueError(f"{media}: {report.failed[0].error}")
    table_path = Path(report.results[0].output)
    df = encode_table(read_table(table_path), tok)
    write_table(df, table_path)
    ok = df[df["success"] == 1]
    if ok.empty:
        raise ValueError(f"no face found in {media}")
    row = ok.iloc[len(ok) // 2]
    dec = decomposition_figure(tok, row, outdir / "decomposition.png")
    atlas = build_atlas(tok, outdir / "atlas", tables=[table_path], max_codes=24, progress=False,
                        model_path=str(model) if model else "starter.dfe")
    return DemoResult(media, table_path, dec, atlas.index, len(ok), [int(row[c]) for c in token_columns(df)])
