"""One error family: every problem a user must fix is a SightXError, reported by the CLI as one line.

`reason` is a stable, machine-readable code (the `rejects.csv` reason for an input that cannot be
used); the message says what is wrong and, where there is one, what to do about it.
"""

from __future__ import annotations


def one_line(text: str) -> str:
    """The first line of `text`: messages from libraries may carry a traceback-like tail."""
    return text.strip().splitlines()[0] if text.strip() else ""


class SightXError(Exception):
    """A problem the user can act on; str() is one line."""

    def __init__(self, message: str = "", reason: str = "") -> None:
        super().__init__(message, reason)  # both in args: the error survives pickling across processes
        self.message = message
        self.reason = reason

    def __str__(self) -> str:
        return one_line(self.message or self.reason)


class Rejection(SightXError):
    """An input that cannot become (or be graded as) a sample: a reason code and a detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        Exception.__init__(self, reason, detail)
        self.reason = reason
        self.detail = detail
        self.message = f"{reason}: {detail}" if detail else reason


def describe(e: BaseException) -> str:
    """A one-line description of an unexpected exception, for a rejection or an error row."""
    return one_line(f"{type(e).__name__}: {e}")
