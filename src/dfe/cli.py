"""Command-line interface: a thin typer layer over the Python API."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="dfe — Discrete Facial Encoding: faces -> expression tokens -> predictions.")
log = logging.getLogger("dfe")


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs.")):
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def extract(
    inputs: list[str] = typer.Argument(..., help="Images, videos, folders (recursive) or globs."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the per-frame tables and report.json."),
    max_faces: int = typer.Option(1, help="Faces per frame to track (each gets a face_id)."),
    neutral: Optional[str] = typer.Option(None, help="Images only: 'auto' (<prefix>_neutral.<ext> beside each image) or a CSV with columns image,neutral."),
    format: str = typer.Option("parquet", "--format", help="parquet or csv."),
    overwrite: bool = typer.Option(False, help="Redo inputs whose table already exists."),
    landmarker_model: Optional[Path] = typer.Option(None, help="Your own face_landmarker.task (default: the bundled one)."),
):
    """Faces in images and videos -> one per-frame table per input (+ report.json)."""
    from dfe.extraction import ExtractOptions, extract as run

    opts = ExtractOptions(max_faces=max_faces, landmarker_model=str(landmarker_model) if landmarker_model else None,
                          neutral=neutral, format=format, overwrite=overwrite)
    try:
        report = run(inputs, output, opts)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        _fail(str(e))
    done = [r for r in report.results if r.status != "failed"]
    typer.echo(f"{len(done)} ok, {len(report.failed)} failed -> {Path(output) / 'report.json'}")
    for r in report.failed:
        typer.echo(f"  failed: {r.input}: {r.error}", err=True)
    raise typer.Exit(1 if report.failed else 0)


if __name__ == "__main__":  # pragma: no cover
    app()
