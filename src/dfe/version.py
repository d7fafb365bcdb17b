"""dfe's version, where every layer can read it (``dfe.__version__`` is the same string)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dfe")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0"
