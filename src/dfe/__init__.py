"""dfe — Discrete Facial Encoding: faces -> pose- and identity-free expression psi -> discrete tokens.

The package's folders are the pipeline (docs/architecture.md): ``extraction`` (media -> per-frame
psi, AUs and gaze), ``tokens`` (psi -> tokens), ``analysis`` (events, features, tasks, evaluation),
``views`` (pictures, the atlas, names), ``runs`` (corpora through a manifest) and the CLI on top.
``table`` (the per-frame table's columns) sits under them all.
"""

from dfe import _compat
from dfe.version import __version__

__all__ = ["__version__", "extract", "extract_file", "ExtractOptions", "Tokenizer", "BagOfTokens"]

_compat.install()  # dfe 0.3/0.4 module paths (dfe.bow, dfe.runner, ...) keep importing, with a warning

_LAZY = {  # `import dfe` stays fast: torch and MediaPipe load only when these are first used
    "extract": "dfe.runs.extract", "extract_file": "dfe.extraction.pipeline",
    "ExtractOptions": "dfe.extraction.pipeline", "Tokenizer": "dfe.tokens.tokenizer",
    "BagOfTokens": "dfe.analysis.features",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dfe' has no attribute {name!r}")
