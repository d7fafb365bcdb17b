"""dfe — Discrete Facial Encoding: faces -> pose- and identity-free expression psi -> discrete tokens."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dfe")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__", "extract", "extract_file", "Tokenizer", "BagOfTokens"]


def __getattr__(name):  # lazy: `import dfe` stays fast and torch loads only when needed
    if name in ("extract", "extract_file", "ExtractOptions"):
        from dfe import extraction as _extract

        return getattr(_extract, name)
    if name == "Tokenizer":
        from dfe.tokens.tokenizer import Tokenizer

        return Tokenizer
    if name == "BagOfTokens":
        from dfe.analysis.features import BagOfTokens

        return BagOfTokens
    raise AttributeError(name)
