"""Command-line interface: a thin typer layer over the Python API.

Every command is registered with :func:`command`, which turns the errors dfe raises on purpose
(:class:`dfe.errors.DfeError`) into ``error: <sentence>`` and exit status 2: the command did
nothing. Exit status 1 is kept for a batch in which some inputs failed (:func:`_finish`). Options
that several commands share are defined once below (``Workers``, ``Engine``, ...), with one help text.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from dfe.errors import DfeError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,  # plain help: [ray] stays literal
                  help="dfe — Discrete Facial Encoding: faces -> expression tokens -> predictions.")

# What the one handler turns into one sentence: dfe's own errors, and the ValueError and OSError
# (a missing or unwritable file) that layers below still raise for bad input (labels files, options).
USER_ERRORS = (DfeError, ValueError, OSError)
USAGE_EXIT = 2  # the command did nothing (as click's own usage errors)


class CommandError(DfeError):
    """What a command was given cannot be used: a missing option, options that do not go together, a
    frame that has no face (one sentence naming it)."""


# ---------------------------------------------------------------------- options shared by commands
# one definition, one help text each; a command's own default goes in its signature
Workers = Annotated[Optional[int], typer.Option(min=1, help="Processes to share the inputs (default: all cores).")]
Engine = Annotated[str, typer.Option(help="local (this process or a process pool) or ray (one task per input; "
                                          "pip install 'dfe[ray]').")]
RayAddress = Annotated[Optional[str], typer.Option(help="With --engine ray: join this cluster (default: start a local one).")]
Overwrite = Annotated[bool, typer.Option(help="Redo the inputs given even if their output is up to date.")]
ShowProgress = Annotated[bool, typer.Option("--progress/--no-progress",
                                            help="Show progress on stderr (plain lines when it is not a terminal).")]
Group = Annotated[Optional[str], typer.Option(help="Column of person ids in the labels file: held-out sets are whole people "
                                                   "(no person in both training and test). Ids are read as text ('001' is not '1').")]
Model = Annotated[Optional[Path], typer.Option("--model", "-m", help="A model file from `dfe fit`.")]
RunFolder = Annotated[Optional[Path], typer.Option("-o", "--output", help="Output folder: a file per input, manifest.sqlite "
                                                                          "and report.json (a rerun skips what is up to date).")]
ReportFolder = Annotated[Path, typer.Option("-o", "--output", help="Report folder.")]
VideoFps = Annotated[Optional[float], typer.Option("--fps", help="Videos: read at most this many frames per second.")]


def command(name: str | None = None):
    """``app.command(name)`` with the one error handler: a :data:`USER_ERRORS` error prints
    ``error: <sentence>`` and exits with :data:`USAGE_EXIT`; anything else stays a traceback (a bug)."""
    def register(func):
        @functools.wraps(func)
        def run(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except USER_ERRORS as e:
                typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
                raise typer.Exit(USAGE_EXIT) from None

        return app.command(name)(run)

    return register


def _fail(message: str) -> NoReturn:
    """Stop the command: ``error: <message>`` (through :func:`command`'s handler)."""
    raise CommandError(message)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (so a CLI called twice in
    one process, as the tests do, never writes to a closed stream)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _version(value: bool) -> None:
    if value:
        from dfe.version import __version__

        typer.echo(f"dfe {__version__}")
        raise typer.Exit()


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print dfe's version.")):
    if not any(isinstance(h, _StderrHandler) for h in logging.getLogger().handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG if verbose else logging.INFO)


def _workers(n: int | None) -> int:
    """``--workers``, or all cores."""
    from dfe.runs.executors import default_workers

    return n or default_workers()


def _finish(outcomes, done: str, tail: str = "", noun: str = "input") -> NoReturn:
    """One line per failed or skipped input, a warning naming inputs without a face, the summary
    sentence (:func:`dfe.runs.progress.summary`), and exit 1 if anything failed."""
    from dfe.runs.progress import faceless_warning, summary

    for o in outcomes:
        if o.status in ("failed", "claimed"):
            typer.secho(f"  {'failed' if o.status == 'failed' else 'skipped'}: {o.input}: {o.error}",
                        fg=typer.colors.RED if o.status == "failed" else typer.colors.YELLOW, err=True)
    warning = faceless_warning(outcomes)
    if warning:
        typer.secho(warning, fg=typer.colors.YELLOW, err=True)
    typer.echo(summary(outcomes, noun, done) + tail)
    raise typer.Exit(1 if any(o.status == "failed" for o in outcomes) else 0)


def _load_model(path: Path):
    from dfe.tokens.tokenizer import Tokenizer

    return Tokenizer.load(path)


@command()
def extract(
    inputs: Optional[list[str]] = typer.Argument(None, metavar="INPUTS...", help="Images, videos, folders (recursive) or globs."),
    output: RunFolder = ...,
    max_faces: int = typer.Option(1, help="Faces per frame to track (each gets a face_id)."),
    neutral: Optional[str] = typer.Option(None, help="Images only: 'auto' (<prefix>_neutral.<ext> beside each image) or a CSV with columns image,neutral."),
    format: str = typer.Option("parquet", "--format", help="parquet, csv, or openface (an OpenFace 2.2 FeatureExtraction CSV, dfe's columns after)."),
    overwrite: Overwrite = False,
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Also redo every input whose last run into this folder failed."),
    landmarker_model: Optional[Path] = typer.Option(None, help="Your own face_landmarker.task (default: the bundled one)."),
    identity: str = typer.Option("auto", help="How identity is removed without --neutral: auto (photos: face model fit; "
                                 "videos: face model fit on each track's calm frames), model (fit on every frame), "
                                 "track (dfe 0.1: a track's calm frames; photos: the canonical face), canonical."),
    persons: Optional[Path] = typer.Option(None, help="CSV with columns image,person: photos of one person share one identity fit."),
    face_model: Optional[Path] = typer.Option(None, help="Your own face model file (default: the bundled one; see scripts/build_face_model.py)."),
    landmarks: bool = typer.Option(True, "--landmarks/--no-landmarks", help="Keep MediaPipe's 478 raw landmarks in the tables (--no-landmarks: about half the bytes)."),
    fps: VideoFps = None,
    start: Optional[float] = typer.Option(None, help="Videos: start at this second."),
    end: Optional[float] = typer.Option(None, help="Videos: stop at this second."),
    workers: Workers = None,
    engine: Engine = "local",
    ray_address: RayAddress = None,
    progress: ShowProgress = True,
):
    """Faces in images and videos -> one per-frame table per input (+ report.json)."""
    from dfe.extraction.pipeline import ExtractOptions
    from dfe.runs.extract import extract as run
    from dfe.extraction.identity import IDENTITY_MODES

    if identity not in IDENTITY_MODES:
        _fail(f"--identity must be one of {', '.join(IDENTITY_MODES)}, not {identity!r}")
    if not inputs and not retry_failed:
        _fail("give images, videos or folders to extract (or --retry-failed)")
    opts = ExtractOptions(max_faces=max_faces, landmarker_model=str(landmarker_model) if landmarker_model else None,
                          neutral=neutral, format=format, overwrite=overwrite, identity=identity,
                          persons=str(persons) if persons else None, face_model=str(face_model) if face_model else None,
                          fps=fps, start=start, end=end, landmarks=landmarks, progress=progress)
    opts.sampling  # bad --fps/--start/--end: one sentence before any work
    report = run(inputs or [], output, opts, retry_failed=retry_failed, workers=_workers(workers),
                 engine=engine, ray_address=ray_address)
    _finish(report.results, "ok", f" Report: {Path(output) / 'report.json'}")


@command()
def synth(
    inputs: list[str] = typer.Argument(..., help="Photos, folders (recursive) or globs."),
    output: RunFolder = ...,
    unit: Optional[list[str]] = typer.Option(None, "--unit", "-u", help="A unit and its intensity in cm of peak movement, e.g. AU4=0.6 or AU12L=0.5 (repeat to combine)."),
    control: bool = typer.Option(False, help="No unit: the d = 0 control (resampling and JPEG only)."),
    overwrite: Overwrite = False,
    workers: Workers = None,
    progress: ShowProgress = True,
):
    """Warp FACS action units onto real photos: <id>.jpg (or .png), its card <id>.json and the
    ground-truth displacement <id>.truth.parquet per photo."""
    from dfe.runs.synth import synthesize

    if not unit and not control:
        _fail("give at least one --unit (e.g. --unit AU4=0.6), or --control for the d = 0 control")
    outcomes = synthesize(inputs, output, list(unit or []), overwrite=overwrite, workers=_workers(workers),
                          progress=progress)
    _finish(outcomes, "synthesized", f" -> {output}")


@command()
def status(
    output: Path = typer.Argument(..., help="An output folder of `dfe extract`, `dfe encode` or another corpus command."),
):
    """What an output folder holds: done, failed, stale (input changed or gone) and pending inputs."""
    from dfe.runs.manifest import status as run

    groups = run(output)
    typer.echo(", ".join(f"{len(v)} {k}" for k, v in groups.items()))
    for state in ("failed", "stale", "pending"):
        for r in groups[state]:
            typer.echo(f"  {state}: {r.input} -> {r.id}" + (f": {r.error}" if r.error else ""))
    if groups["failed"]:
        typer.echo(f"rerun the failures with: dfe extract --retry-failed -o {output}")
    raise typer.Exit(1 if groups["failed"] or groups["stale"] else 0)


@command("import-flame")
def import_flame(
    source: Path = typer.Argument(..., help="EMOCA/DECA/inferno output folder, a SMIRK-style .npz/.pt/.pkl, a folder of them, or a CSV."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the tables (one per video); a .parquet/.csv name for a single table."),
    fps: float = typer.Option(30.0, help="Frame rate, for the timestamp column."),
    overwrite: Overwrite = False,
    progress: ShowProgress = True,
):
    """Paper-faithful input: FLAME expression (50) + jaw pose (3) [+ eyelids (2)] -> per-frame tables."""
    from dfe.extraction.flame import find_flame_units, flame_table, read_unit
    from dfe.runs.import_flame import import_flame as run
    from dfe.table import write_table

    if output.suffix in (".parquet", ".csv"):  # one table to one file (dfe 0.1's form)
        units = find_flame_units(source)
        if len(units) != 1:
            _fail(f"{source} holds {len(units)} videos: give a folder for -o")
        df = flame_table(read_unit(units[0]), fps)
        write_table(df, output)
        typer.echo(f"{len(df)} frames -> {output}  (fit with: dfe fit {output} --psi-kind {df['psi_kind'].iloc[0]})")
        return
    outcomes = run(source, output, fps, overwrite=overwrite, progress=progress)
    _finish(outcomes, "ok", f" Tables: {output}  (fit with: dfe fit {output} --psi-kind flame)", noun="video")


@command()
def fit(
    tables: list[str] = typer.Argument(..., metavar="TABLES...", help="Per-frame tables or folders of them (from `dfe extract`)."),
    output: Path = typer.Option(..., "-o", "--output", help="Model file to write (e.g. model.dfe)."),
    psi_kind: str = typer.Option("geometry", help="geometry (1404), blendshapes (52), flame (53) or flame+eyelids (55)."),
    codebook_size: int = typer.Option(256, "--codebook-size", "-N", help="Codes in the shared codebook (shape-gain: actions x gain levels; fewer when the corpus is too small, with a warning)."),
    levels: int = typer.Option(4, "--levels", "-K", help="Tokens per frame (residual levels)."),
    quantizer: str = typer.Option("shape-gain", help="shape-gain (actions with an intensity, the default) or rvq-vae (transformer + ResidualVQ)."),
    gain_levels: int = typer.Option(4, help="shape-gain: intensities per action."),
    codebook_update: str = typer.Option("joint", help="shape-gain: joint (all actions by least squares, since 0.8) or per-level (dfe 0.4-0.7)."),
    distinct_actions: bool = typer.Option(True, "--distinct-actions/--repeat-actions", help="shape-gain: a frame uses each action at most once (since 0.8), or may repeat one (dfe 0.4-0.7)."),
    epochs: int = typer.Option(40, help="rvq-vae: maximum epochs (early stopping on the held-out videos)."),
    decoder: str = typer.Option("linear", help="linear (exactly additive tokens) or mlp."),
    sparsity: float = typer.Option(0.1, help="Weight of the L1 sparsity on code deformations (0 = off)."),
    orthogonal: float = typer.Option(0.0, help="Weight of the codebook orthogonality loss (0 = off)."),
    seed: int = typer.Option(0, help="Random seed (on CPU, a fit is bit-identical for the same seed and torch thread count, e.g. OMP_NUM_THREADS)."),
    max_frames: Optional[int] = typer.Option(None, help="Hold at most this many frames in memory: a random sample, stratified by video."),
    device: str = typer.Option("auto", help="auto (a CUDA GPU when there is one), cpu or cuda."),
    progress: ShowProgress = True,
):
    """Train a tokenizer (shape-gain dictionary, or the residual-VQ VAE) on extracted tables; held-out split by video."""
    from dfe.runs.manifest import check_output_file
    from dfe.tokens.tables import fit_tables

    check_output_file(output, "model file")
    tok = fit_tables(tables, psi_kind=psi_kind, codebook_size=codebook_size, levels=levels, epochs=epochs,
                     quantizer=quantizer, gain_levels=gain_levels, codebook_update=codebook_update,
                     distinct_actions=distinct_actions, decoder=decoder, sparsity_weight=sparsity, orthogonal_weight=orthogonal, seed=seed,
                     max_frames=max_frames, device=device, progress=progress)
    tok.save(output)
    s = tok.summary
    typer.echo(f"saved {output}: {s.n_train} train / {s.n_val} held-out frames, {s.epochs_run} epochs "
               f"(best {s.best_epoch}), held-out cosine {s.val_cosine:.3f}, MSE {s.val_mse:.4f}, "
               f"perplexity {s.perplexity:.1f}, dead codes {s.dead_code_share:.0%}, codes per level {s.level_usage}")


@command()
def encode(
    tables: list[str] = typer.Argument(..., metavar="TABLES...", help="Per-frame tables or folders of them."),
    model: Model = ...,
    output: RunFolder = None,
    in_place: bool = typer.Option(False, "--in-place", help="Rewrite the input tables instead of writing to -o (one process)."),
    overwrite: Overwrite = False,
    workers: Workers = None,
    engine: Engine = "local",
    ray_address: RayAddress = None,
    device: str = typer.Option("cpu", help="auto, cpu or cuda (encoding runs on this device; not cpu: one process)."),
    progress: ShowProgress = True,
):
    """Add tok_1..tok_K (and recon_error) columns to per-frame tables."""
    from dfe.runs.encode import encode_corpus

    if not in_place and output is None:
        _fail("give -o OUTDIR or --in-place")
    tok = _load_model(model)
    tok.to(device)
    outcomes = encode_corpus(tables, tok, output, in_place, overwrite=overwrite, progress=progress,
                             workers=_workers(workers) if device == "cpu" else 1, engine=engine, ray_address=ray_address)
    _finish(outcomes, "encoded", noun="table")


@command()
def atlas(
    model: Path = typer.Argument(..., help="Model file from `dfe fit`."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for index.html and its images."),
    tables: Optional[list[str]] = typer.Option(None, "--tables", help="Encoded or raw tables: usage, faces, templates."),
    labels: Optional[Path] = typer.Option(None, help="CSV: first column = table stem (video), then label columns."),
    label_column: Optional[str] = typer.Option(None, help="Which label column (default: the second column)."),
    max_codes: Optional[int] = typer.Option(None, help="Draw at most this many codes (most used first)."),
    flame_model: Optional[Path] = typer.Option(None, help="FLAME models: your own FLAME generic_model.pkl (never bundled) to draw codes on the FLAME face; without it, parameter profiles."),
    progress: ShowProgress = True,
):
    """Write a static HTML codebook atlas (opens offline in a browser)."""
    from dfe.extraction.flame import FlameModel
    from dfe.views.atlas import build_atlas

    tok = _load_model(model)
    flame = FlameModel.load(flame_model) if flame_model else None
    result = build_atlas(tok, output, tables=tables, labels=labels, label_column=label_column, max_codes=max_codes,
                         progress=progress, flame=flame, model_path=str(model))
    typer.echo(f"atlas of {len(result.codes)} codes: {result.index}")


@command()
def events(
    tables: list[str] = typer.Argument(..., metavar="TABLES...", help="Per-frame tables or folders (encoded or not: tables without tokens are encoded with --model)."),
    model: Model = ...,
    output: RunFolder = ...,
    levels: Optional[int] = typer.Option(None, help="A code is active only where it appears at levels <= this."),
    max_gap: float = typer.Option(0.1, help="Seconds of absence that do not end an event."),
    min_duration: float = typer.Option(0.1, help="Events shorter than this (seconds) are flicker, dropped."),
    hold: float = typer.Option(0.9, help="Keep an event on while strength >= this x the code's median token strength (0: off)."),
    fmt: str = typer.Option("parquet", "--format", help="Events table format: parquet or csv."),
    tiers: str = typer.Option("code", help="ELAN tiers: one per code ('code') or per level ('level')."),
    timeline: bool = typer.Option(True, help="Draw <video>.timeline.png per table."),
    max_rows: int = typer.Option(24, help="Timeline: draw at most this many codes (coarse levels first); the figure says how many it left out."),
    overwrite: Overwrite = False,
    progress: ShowProgress = True,
):
    """Facial events per video: onset, apex, offset, duration and strength of each code; ELAN files."""
    from dfe.analysis.events import EventOptions
    from dfe.runs.events import events_corpus

    tok = _load_model(model)
    options = EventOptions(levels=levels, max_gap=max_gap, min_duration=min_duration, hold=hold or None)
    outcomes = events_corpus(tables, tok, output, options, fmt, tiers, timeline, overwrite=overwrite, progress=progress,
                             max_rows=max_rows)
    _finish(outcomes, "done", f" Events, .eaf files and timelines: {output}", noun="table")


def _frame_row(spec: str):
    """FRAME_SPEC = TABLE_OR_MEDIA[:FRAME[:FACE_ID]] -> one table row."""
    from dfe.extraction.pipeline import extract_file
    from dfe.extraction.io import media_kind
    from dfe.table import read_table

    parts = spec.split(":")
    path, frame = parts[0], int(parts[1]) if len(parts) > 1 else 0
    face = int(parts[2]) if len(parts) > 2 else None
    df = extract_file(path) if media_kind(path) else read_table(path)
    rows = df[(df["frame"] == frame) & (df["success"] == 1)]
    if face is not None:
        rows = rows[rows["face_id"] == face]
    if rows.empty:
        raise CommandError(f"no face at frame {frame} of {path}")
    return rows.iloc[0]


@command()
def show(
    frame_spec: str = typer.Argument(..., help="TABLE_OR_MEDIA[:FRAME[:FACE_ID]], e.g. tables/clip.parquet:120"),
    model: Model = None,
    output: Path = typer.Option(Path("decomposition.png"), "-o", "--output", help="PNG to write."),
    aus: bool = typer.Option(False, "--aus", help="Draw the action-unit traces over time of the table (or media) instead (no model needed)."),
):
    """Render one frame's decomposition into its tokens (coarse to fine) as a PNG; --aus: AU traces over time."""
    from dfe.views.figures import decomposition_figure

    if aus:
        _show_aus(frame_spec, output)
        return
    if model is None:
        _fail("give --model (a model file from `dfe fit`), or --aus for action-unit traces")
    tok = _load_model(model)
    decomposition_figure(tok, _frame_row(frame_spec), output)
    typer.echo(f"wrote {output}")


def _show_aus(spec: str, output: Path) -> None:
    from dfe.extraction.pipeline import extract_file
    from dfe.extraction.io import media_kind
    from dfe.table import read_table
    from dfe.views.timeline import action_unit_figure

    parts = spec.split(":")
    path, face = parts[0], int(parts[2]) if len(parts) > 2 else 0
    df = extract_file(path) if media_kind(path) else read_table(path)
    if not {"success", "face_id"} <= set(df.columns):
        raise CommandError(f"{path} is not a dfe per-frame table (no success or face_id column)")
    if not ((df["success"] == 1) & (df["face_id"] == face)).any():
        raise CommandError(f"no face {face} in {path}")
    action_unit_figure(df, output, title=Path(path).name, face_id=face)
    typer.echo(f"wrote {output}")


@command()
def openface(
    tables: list[str] = typer.Argument(..., help="dfe per-frame tables or folders of them (any dfe version)."),
    output: RunFolder = ...,
    overwrite: Overwrite = False,
    progress: ShowProgress = True,
):
    """Convert dfe tables to OpenFace 2.2 FeatureExtraction CSVs, <id>.csv (action units and gaze computed for old tables)."""
    from dfe.runs.openface import convert_tables

    outcomes = convert_tables(tables, output, overwrite, progress)
    _finish(outcomes, "converted", f" -> {output}")


@command()
def evaluate(
    tables: list[str] = typer.Argument(..., metavar="TABLES...", help="Per-frame tables or folders."),
    model: Model = ...,
    output: ReportFolder = ...,
    labels: Optional[Path] = typer.Option(None, help="CSV (first column = video) for label precision@k and a person split."),
    label_column: Optional[str] = typer.Option(None, help="Label column for precision@k."),
    group: Group = None,
    seed: int = typer.Option(0, help="Random seed."),
    refit: bool = typer.Option(True, "--refit/--no-refit", help="If the model saw any held-out video: fit one of its configuration on the training split (default), or refuse (--no-refit)."),
    progress: ShowProgress = True,
):
    """Fidelity, diversity and retrieval of the tokens vs blendshapes (AU-like) on held-out videos."""
    from dfe.analysis.evaluate import EvaluateOptions, evaluate as run

    tok = _load_model(model)
    report = run(tables, tok, output, EvaluateOptions(labels=labels, label_column=label_column, group_column=group,
                                                      seed=seed, refit=refit, progress=progress))
    if report["refit"]:
        typer.echo(f"note: {report['refit']['reason']}; scored a tokenizer of the same configuration fitted on the "
                   "training split instead (report.json: overlap_groups, refit)")
    fid = report["fidelity"][0]
    d = report["diversity"]
    typer.echo(f"held-out cosine {fid['cosine_mean']:.3f}; level curve "
               f"{' '.join(f'{c:.3f}' for c in report['level_curve_cosine'])}; distinct token combinations/1000 "
               f"{d['distinct_token_combinations_per_1000']:.0f} vs blendshape sets/1000 "
               f"{d.get('distinct_binarised_blendshape_sets_per_1000', float('nan')):.0f}")
    typer.echo(f"report: {output / 'report.md'}")


@command("evaluate-task")
def evaluate_task(
    tables: list[str] = typer.Argument(..., metavar="TABLES...", help="Encoded per-frame tables (one per video) or folders."),
    labels: Path = typer.Option(..., help="CSV, one row per video (or per window, id video@k): the video's table stem, the target, optional group; or ELAN .eaf files (a file or folder, one per video named after its table; --target = the tier)."),
    target: str = typer.Option(..., help="Label column to predict."),
    output: ReportFolder = ...,
    group: Group = None,
    folds: int = typer.Option(5, help="Outer cross-validation folds."),
    window: Optional[float] = typer.Option(None, help="Cut videos into windows of this many seconds (pseudo-videos)."),
    features: Optional[Path] = typer.Option(None, help="Your own per-video feature CSV (first column = video id) as another baseline."),
    baseline: Optional[list[str]] = typer.Option(None, "--baseline", help="openface:DIR or pyfeat:DIR: the tool's per-frame CSVs (<video>.csv, matched to the tables by stem), their action units summarised per video like the blendshapes; repeat for more."),
    seed: int = typer.Option(0, help="First seed of the fold assignment."),
    seeds: int = typer.Option(5, min=1, help="Repeat the whole CV with this many fold assignments (seeds seed..seed+seeds-1); the report gives the spread."),
    refit_tokenizer: bool = typer.Option(False, help="Fit a tokenizer per fold on the training groups only (tables need no tokens): the test groups stay unseen."),
    codebook_size: int = typer.Option(64, help="With --refit-tokenizer: codes in the per-fold tokenizer."),
    epochs: int = typer.Option(20, help="With --refit-tokenizer: training epochs per fold."),
    dynamic: bool = typer.Option(False, help="Add dynamic features: events of dfe's codes (alone and beside the bag) and of the blendshapes."),
    model: Model = None,
):
    """Predict a per-video label: dfe bag of tokens vs action-unit-like baselines, grouped CV. With --model
    (the model that encoded the tables), the report says whether it saw the test videos."""
    from dfe.analysis.baselines import load_baselines
    from dfe.analysis.task import TaskOptions, evaluate_task as run
    from dfe.table import find_tables, video_id

    others = load_baselines(baseline, [video_id(p) for p in find_tables(tables)]) if baseline else []
    options = TaskOptions(group=group, n_folds=folds, seed=seed, seeds=seeds, window=window, dynamic=dynamic,
                          user_features=features, baselines=others, refit_tokenizer=refit_tokenizer,
                          tokenizer_settings={"codebook_size": codebook_size, "epochs": epochs} if refit_tokenizer else {})
    summary = run(tables, labels, target, output, options, model=_load_model(model) if model else None)
    cols = [c for c in summary.columns if c.endswith("_mean")][:3]
    typer.echo(summary[["features", *cols]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    typer.echo(f"report: {output / 'comparison.md'}")


@command()
def study(
    media: Optional[list[str]] = typer.Argument(None, help="Videos, photos, folders (recursive) or globs."),
    labels: Optional[Path] = typer.Option(None, help="CSV, one row per input: its table id, path or file name first, then the target and optional group."),
    target: Optional[str] = typer.Option(None, help="Label column to predict."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Study folder (tables, dictionary, reports, index.html, results.json, study.toml)."),
    group: Group = None,
    fit: bool = typer.Option(False, "--fit/--no-fit", help="Fit a dictionary on the study's tables, and one per outer fold (training people only) for prediction (default: the bundled starter)."),
    model: Model = None,
    codebook_size: int = typer.Option(64, "--codebook-size", "-N", help="With --fit: codes in the dictionary."),
    levels: int = typer.Option(4, "--levels", "-K", help="With --fit: tokens per frame."),
    epochs: int = typer.Option(20, help="With --fit: training epochs."),
    folds: int = typer.Option(5, help="Outer cross-validation folds."),
    seeds: int = typer.Option(5, help="Fold assignments to repeat the CV with."),
    seed: int = typer.Option(0, help="First seed (fits, splits, bootstraps)."),
    dynamic: str = typer.Option("auto", help="Dynamic (event) features: auto (when a labelled input is a video), on, off."),
    baseline: Optional[list[Path]] = typer.Option(None, "--baseline", help="Per-video feature CSV from another tool (first column = id), another baseline; repeatable."),
    face_model: Optional[Path] = typer.Option(None, help="Your face model file (e.g. one built without the tested people)."),
    fps: VideoFps = None,
    workers: Workers = None,
    atlas_codes: int = typer.Option(64, help="Draw at most this many codes in the atlas (most used first)."),
    config: Optional[Path] = typer.Option(None, "--config", help="A study.toml (written by an earlier study) instead of the options above."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and an estimated time; do nothing."),
):
    """A whole study: extract -> dictionary -> encode -> events -> atlas -> evaluate -> prediction -> index.html.
    Without --fit or --model, the bundled starter dictionary encodes the tables."""
    from dfe.runs.study_plan import DFE_NAME, StudyConfig, plan_study, read_config
    from dfe.runs.study import run_study

    if config is not None:
        cfg = read_config(config)
    else:
        if not media or labels is None or target is None or output is None:
            _fail("give MEDIA..., --labels, --target and -o (or --config study.toml)")
        cfg = StudyConfig(media=list(media), labels=str(labels), target=target, output=str(output), group=group,
                          fit=fit, model=str(model) if model else None, codebook_size=codebook_size, levels=levels,
                          epochs=epochs, folds=folds, seeds=seeds, seed=seed, dynamic=dynamic,
                          baselines=[str(b) for b in baseline or []], face_model=str(face_model) if face_model else None,
                          fps=fps, workers=workers, atlas_codes=atlas_codes)
    if dry_run:
        typer.echo(plan_study(cfg.resolved()).text())
        return
    result = run_study(cfg)
    r = result.results
    p, f = r["prediction"], r["fidelity"]
    line = f"{r['corpus']['n_ok']} inputs ({r['corpus']['n_failed']} failed)"
    line += f"; held-out cosine {f['rows'][0]['cosine_mean']:.3f}" if "rows" in f else f"; fidelity not measured ({f['skipped']})"
    if "rows" in p:
        row = next(x for x in p["rows"] if x["features"] == DFE_NAME)
        line += (f"; {p['metric']} of dfe tokens {row[p['metric']]:.3f} (95% CI {row['ci95_low']:.3f}-{row['ci95_high']:.3f}, "
                 f"chance {p['chance']:.2f})")
    else:
        line += f"; prediction not run ({p['skipped']})"
    typer.echo(line)
    typer.echo(f"report: {result.index}")
    raise typer.Exit(1 if r["corpus"]["n_failed"] else 0)


@command()
def demo(
    media: Optional[Path] = typer.Argument(None, help="Your image or video (default: scikit-image's astronaut photo)."),
    output: Path = typer.Option(Path("dfe-demo"), "-o", "--output", help="Folder for the demo's files."),
    model: Model = None,
):
    """Extract -> encode -> decomposition PNG -> atlas HTML on one face, with the starter model (or --model)."""
    from dfe.runs.demo import run_demo

    r = run_demo(output, media, model)
    typer.echo(f"input:         {r.input} ({r.faces} frame(s) with a face)")
    typer.echo(f"tokens:        {' '.join(map(str, r.tokens))} (middle frame)")
    typer.echo(f"table:         {r.table}")
    typer.echo(f"decomposition: {r.decomposition}")
    typer.echo(f"atlas:         {r.atlas}  (open in a browser)")


if __name__ == "__main__":  # pragma: no cover
    app()
