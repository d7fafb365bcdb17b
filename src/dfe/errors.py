"""The one base of every error dfe raises on purpose, and how any error becomes one sentence.

Every stage raises a subclass of :class:`DfeError` whose message is one sentence naming the file
(or option) at fault; the CLI turns any of them into that sentence and exit status 2. Errors dfe
did not foresee keep their type in the sentence, so a bug still looks like one.
"""

from __future__ import annotations


class DfeError(Exception):
    """An input, option or file dfe cannot use; ``str(error)`` is one sentence naming it."""


def error_sentence(error: BaseException) -> str:
    """The one-line message a batch records for an input that failed."""
    return str(error) if isinstance(error, DfeError) else f"{type(error).__name__}: {error}"
