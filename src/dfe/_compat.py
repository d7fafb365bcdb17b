"""The module paths of dfe 0.3 and 0.4, still importable: each old module reads its names from the
modules they moved to in dfe 0.5, with a DeprecationWarning naming the new home.

``import dfe.bow`` / ``from dfe.bow import BagOfTokens`` keep working; new code imports from the
layer packages (see docs/architecture.md). A finder on ``sys.meta_path`` answers only the old names
below, so nothing else about importing changes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

# old module -> the modules its names now live in (looked up in this order)
MOVED: dict[str, tuple[str, ...]] = {
    "dfe.io": ("dfe.extraction.io",),
    "dfe.face": ("dfe.extraction.face", "dfe.table"),
    "dfe.mesh": ("dfe.extraction.mesh",),
    "dfe.units": ("dfe.extraction.units",),
    "dfe.action_units": ("dfe.extraction.action_units",),
    "dfe.gaze": ("dfe.extraction.gaze",),
    "dfe.expression": ("dfe.extraction.expression",),
    "dfe.identity": ("dfe.extraction.identity",),
    "dfe.openface": ("dfe.extraction.openface", "dfe.runs.openface"),
    "dfe.flame": ("dfe.extraction.flame", "dfe.runs.import_flame"),
    "dfe.synth": ("dfe.extraction.synth", "dfe.runs.synth"),
    "dfe.synthetic": ("dfe.extraction.synthetic",),
    "dfe.tokenizer": ("dfe.tokens.tokenizer", "dfe.tokens.tables", "dfe.tokens.networks", "dfe.tokens.config"),
    "dfe.dictionary": ("dfe.tokens.dictionary",),
    "dfe.residual_kmeans": ("dfe.tokens.residual_kmeans",),
    "dfe.events": ("dfe.analysis.events", "dfe.runs.events"),
    "dfe.bow": ("dfe.analysis.features", "dfe.analysis.task"),
    "dfe.labels": ("dfe.analysis.labels",),
    "dfe.elan": ("dfe.analysis.elan",),
    "dfe.eval": ("dfe.analysis.evaluate",),
    "dfe.baselines": ("dfe.analysis.baselines",),
    "dfe.render": ("dfe.views.render",),
    "dfe.viz": ("dfe.views.figures",),
    "dfe.atlas": ("dfe.views.atlas",),
    "dfe.naming": ("dfe.views.naming",),
    "dfe.timeline": ("dfe.views.timeline",),
    "dfe.study_report": ("dfe.views.study_report",),
    "dfe.runner": ("dfe.runs.manifest", "dfe.runs.executors", "dfe.runs.encode"),
    "dfe.study": ("dfe.runs.study", "dfe.runs.study_plan", "dfe.runs.study_results"),
    "dfe.demo": ("dfe.runs.demo",),
}


# modules that still exist but lost some of their 0.4 names: each such name -> its new module
_PIPELINE, _EXTRACT, _RUN_PROGRESS = "dfe.extraction.pipeline", "dfe.runs.extract", "dfe.runs.progress"
LEFT: dict[str, dict[str, str]] = {
    "dfe.extraction": {  # dfe 0.4's module, now the layer's package
        **dict.fromkeys(["FORMATS", "ExtractOptions", "neutral_lookup", "person_lookup", "FileObservations",
                         "observe_file", "observations_table", "extract_file", "output_options", "media_frames"],
                        _PIPELINE),
        **dict.fromkeys(["RunReport", "Extractor", "extract"], _EXTRACT),
    },
    "dfe.progress": dict.fromkeys(["set_sink", "frames_done", "flush", "summary", "faceless_inputs",
                                   "faceless_warning"], _RUN_PROGRESS),
}


def _forward_missing(module: types.ModuleType, names: dict[str, str]) -> None:
    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
        warnings.warn(f"{module.__name__}.{name} moved to {names[name]}.{name} in dfe 0.5; import it from there",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(names[name]), name)

    module.__getattr__ = __getattr__


def _forwarding_module(old: str, homes: tuple[str, ...]) -> types.ModuleType:
    module = types.ModuleType(old, f"dfe's old path {old}: its names now live in {', '.join(homes)}.")
    loaded: list[types.ModuleType] = []

    def __getattr__(name: str):
        if name.startswith("__"):  # inspect, pickle and friends probe dunders: answer without importing
            raise AttributeError(name)
        if not loaded:
            loaded.extend(importlib.import_module(h) for h in homes)
        for home in loaded:
            if hasattr(home, name):
                value = getattr(home, name)
                setattr(module, name, value)
                return value
        raise AttributeError(f"module {old!r} (now {', '.join(homes)}) has no attribute {name!r}")

    module.__getattr__ = __getattr__
    module.__path__ = []  # a package-like module, so `import dfe.old` binds it on `dfe`
    return module


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        homes = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {' and '.join(homes)} in dfe 0.5; import it from there "
                      "(the old path keeps working for now)", DeprecationWarning, stacklevel=2)  # importlib's own frames are skipped: the warning names the importing line
        return _forwarding_module(spec.name, homes)

    def exec_module(self, module):
        pass


def install() -> None:
    """Answer the old module paths and the names that left a module (idempotent)."""
    if not any(isinstance(f, _OldPaths) for f in sys.meta_path):
        sys.meta_path.append(_OldPaths())
    for name, names in LEFT.items():
        _forward_missing(importlib.import_module(name), names)
