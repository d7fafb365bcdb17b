"""dfe extract: every input of a corpus through the extraction pipeline, one table each, via the manifest."""

from __future__ import annotations

from functools import partial
from dataclasses import dataclass, field, replace
from pathlib import Path
from dfe.runs import progress
from dfe.extraction.face import FaceLandmarker
from dfe.extraction.identity import load_face_model
from dfe.extraction.io import find_media, media_kind
from dfe.runs.manifest import Manifest, Outcome, RunError
from dfe.runs.executors import Executor, Stage, StageResult, WorkItem, run_stage
from dfe.extraction.openface import openface_frame
from dfe.extraction.pipeline import ExtractOptions, FORMATS, References, extract_file, media_frames, neutral_lookup, output_options, person_lookup


@dataclass
class RunReport:
    """What one ``extract`` run did to each input (the lasting records are in the manifest)."""

    outdir: str
    results: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed


class Extractor:
    """The extract stage for one input, as a picklable object: each process that runs it builds
    its own landmarker (IMAGE mode, shared by that process's photos) on first use."""

    def __init__(self, options: ExtractOptions, neutrals: dict, persons: dict):
        self.options, self.neutrals, self.persons = options, neutrals, persons

    def __call__(self, item: WorkItem) -> StageResult:
        options, path = self.options, item.path
        landmarker, refs = _image_state(options, self.persons) if media_kind(path) == "image" else (None, None)
        ref = self.neutrals.get(path)
        openface = options.format == "openface"
        df = extract_file(path, replace(options, landmarks=True) if openface else options, landmarker,
                          refs.neutral(ref) if ref and refs else None, ref.name if ref else None, progress=False,
                          person=refs.person(path) if refs else None, on_frame=progress.frames_done)
        frames, expected = int(df["frame"].nunique()), df.attrs.get("expected_frames", 1)
        if openface:
            df = openface_frame(df)
        error = (f"truncated video: the container ends after {frames} of {expected} frames (partial table kept)"
                 if frames < 0.9 * expected else None)
        return StageResult(df, frames, int(df["success"].sum()), error)

    def close(self) -> None:
        _close_image_state()


_IMAGE_STATE: dict = {}  # per process: one IMAGE-mode landmarker (and reference fits) for all its photos


def _image_state(options: ExtractOptions, persons: dict):
    """This process's IMAGE-mode landmarker and reference fits for these options, made once: a pool
    worker receives a fresh copy of the stage with every input, but keeps one landmarker."""
    key = (options.max_faces, options.landmarker_model, repr(options), repr(sorted(persons.items())))
    if _IMAGE_STATE.get("key") != key:
        _close_image_state()
        from multiprocessing import util

        landmarker = FaceLandmarker("image", options.max_faces, options.landmarker_model)
        _IMAGE_STATE.update(key=key, landmarker=landmarker, refs=References(landmarker, options, persons))
        util.Finalize(None, _close_image_state, exitpriority=10)  # pool workers exit without closing it
    return _IMAGE_STATE["landmarker"], _IMAGE_STATE["refs"]


def _close_image_state() -> None:
    landmarker = _IMAGE_STATE.pop("landmarker", None)
    _IMAGE_STATE.clear()
    if landmarker is not None:
        landmarker.close()


def extract(inputs: list[str | Path], outdir: str | Path, options: ExtractOptions | None = None,
            retry_failed: bool = False, workers: int = 1, engine: str = "local",
            ray_address: str | None = None) -> RunReport:
    """Extract every image and video in ``inputs`` into ``outdir``; returns what this run did.

    The manifest of ``outdir`` (:mod:`dfe.runs.manifest`) names each table, skips finished inputs whose
    content and options are unchanged (unless ``options.overwrite``) and keeps every record;
    ``retry_failed`` adds the inputs whose last run failed. ``workers`` processes (one landmarker
    each) or ``engine="ray"`` (one task per input) share the work; see :func:`dfe.runs.executors.run_stage`.
    """
    options = options or ExtractOptions()
    if options.format not in FORMATS:
        raise RunError(f"the format must be one of {', '.join(FORMATS)}, not {options.format!r}")
    executor = Executor(workers, engine, ray_address)  # an unknown engine stops here, before any work
    files, problems = find_media(inputs)
    manifest = Manifest(outdir)  # a file or unwritable folder stops here, before any work
    try:
        if retry_failed:
            retry = [Path(r.input) for r in manifest.records() if r.status == "failed" and Path(r.input).is_file()]
            files += [p for p in retry if p not in set(files) and media_kind(p)]
        manifest.record_problems(problems)  # every input gets a record, a bad one too
    finally:
        manifest.close()
    load_face_model(options.face_model)  # a missing or damaged face model stops the run before any work
    extractor = Extractor(options, neutral_lookup(options.neutral, files), person_lookup(options.persons))
    try:
        stage = Stage("extract", extractor, output_options(options), FORMATS[options.format],
                      frames_of=partial(media_frames, sampling=options.sampling))
        outcomes = run_stage(stage, files, outdir, overwrite=options.overwrite, executor=executor,
                             show_progress=options.progress)
    finally:
        extractor.close()
    return RunReport(str(outdir), [Outcome(p.path, "failed", error=p.error) for p in problems] + outcomes)
