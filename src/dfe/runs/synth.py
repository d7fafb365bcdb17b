"""dfe synth: FACS units warped onto every photo of a folder, one photo and card each, via the manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path
import numpy as np
from dfe.extraction.io import InputProblem, find_media, media_kind
from dfe.runs.manifest import Manifest, Outcome, dfe_version, file_sha256
from dfe.runs.executors import Executor, Stage, StageResult, WorkItem, run_stage
from dfe.extraction.units import Unit, parse_units
from dfe.extraction.synth import JPEG_QUALITY, SynthCard, SynthError, load_photo, synthesize_face


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class SynthStage:
    """The synth stage for one photo (picklable): warp, then write the photo and its card beside
    the ground-truth table the runner writes."""

    def __init__(self, units: list[tuple[Unit, float]], outdir: str | Path, fmt: str = "parquet"):
        self.units, self.outdir, self.fmt = units, Path(outdir), fmt

    def __call__(self, item: WorkItem) -> StageResult:
        import cv2

        path, photo_id = item.path, item.id
        rgb, face = load_photo(path)
        result = synthesize_face(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), face, self.units, Path(path).name)
        suffix = ".png" if Path(path).suffix.lower() == ".png" else ".jpg"
        photo = self.outdir / f"{photo_id}{suffix}"
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if suffix == ".jpg" else []

        def write_photo(tmp: Path) -> None:
            if not cv2.imwrite(str(tmp), result.image, params):
                raise SynthError(f"cannot write the photo made from {Path(path).name} to {photo}")

        card = SynthCard(photo.name, f"{photo_id}.truth.{self.fmt}", str(Path(path).resolve()), file_sha256(path),
                         [{"unit": u.label, "au": u.au, "side": u.side, "intensity": x} for u, x in self.units],
                         float(np.linalg.norm(result.displacement, axis=1).max()),
                         float(np.linalg.norm(result.target_px - result.source_px, axis=1).max()),
                         face.px_per_cm, face.alignment.rmse, dfe_version=dfe_version())
        _write_atomic(photo, write_photo)
        _write_atomic(self.outdir / f"{photo_id}.json",
                      lambda tmp: tmp.write_text(json.dumps(card.to_dict(), indent=2)))
        return StageResult(result.truth_table().assign(photo=photo.name), 1, 1)


def check_units(specs: list[str], inputs: list[str | Path]) -> list[tuple[Unit, float]]:
    """Parsed unit specs; SynthError naming the photos when one is unknown or out of range."""
    try:
        return parse_units(specs)
    except ValueError as e:
        names = [Path(p).name for p in inputs]
        which = names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "") if names else "no photo"
        raise SynthError(f"cannot synthesize {which}: {e}") from None


def synthesize(inputs: list[str | Path], outdir: str | Path, specs: list[str], overwrite: bool = False,
               workers: int = 1, progress: bool = True, fmt: str = "parquet") -> list[Outcome]:
    """``dfe synth``: warp every photo of ``inputs`` by the units ``specs`` (``["AU4=0.6"]``; none:
    the d = 0 control) into ``outdir``: ``<id>.jpg`` (or .png), ``<id>.json`` (its card) and
    ``<id>.truth.parquet`` (ground truth), with the runner's manifest, names and resume."""
    if fmt not in ("parquet", "csv"):
        raise SynthError(f"the ground-truth format must be parquet or csv, not {fmt!r}")
    units = check_units(specs, inputs)  # before any work
    files, problems = find_media(inputs)
    photos = [f for f in files if media_kind(f) == "image"]
    problems += [InputProblem(str(f), f"{f.name} is a video: dfe synth warps photos") for f in files if f not in photos]
    manifest = Manifest(outdir)
    try:
        manifest.record_problems(problems)  # every input gets a record, a bad one too
    finally:
        manifest.close()
    options = {"stage": "synth", "units": [(u.label, x) for u, x in units], "format": fmt,
               "quality": JPEG_QUALITY}
    stage = Stage("synth", SynthStage(units, outdir, fmt), options, f".truth.{fmt}")
    outcomes = run_stage(stage, photos, outdir, overwrite=overwrite, executor=Executor(workers), show_progress=progress)
    return [Outcome(p.path, "failed", error=p.error) for p in problems] + outcomes
