"""Requests the service refuses, each with its HTTP status and a one-line reason."""

from __future__ import annotations

import re

from sightx.errors import Rejection, SightXError

# Rejection reasons that mean "this is not an image we read" rather than "this image is unusable".
_UNSUPPORTED = {"not-image"}
# What a library's message may carry that a client has no business reading: object reprs with
# addresses (Pillow: "cannot identify image file <_io.BytesIO object at 0x7f...>") and file paths.
_REPR = re.compile(r"<[\w.]+ (?:object|at) [^<>]*>|<[^<>]*\bat 0x[0-9a-fA-F]+>")
_PATH = re.compile(r"(?:[A-Za-z]:)?[\\/][^\s'\"]*[\\/](?:site|dist)-packages[\\/][^\s'\":]*(?::\d+)?")


def clean(text: str) -> str:
    """One line, without object reprs or library paths."""
    text = _PATH.sub("(a library)", _REPR.sub("the upload", text))
    return " ".join(text.split())


class Refused(SightXError):
    """A request answered with `status` and a one-line message (and headers such as Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, str(status))
        self.status = status
        self.headers = headers or {}


def refused_photo(name: str, e: Rejection) -> Refused:
    """415 for what is not a photo at all, 422 for a photo that cannot be graded (truncated, huge, tiny)."""
    return Refused(415 if e.reason in _UNSUPPORTED else 422, clean(f"{name}: {e}"))
