"""Requests the service refuses, each with its HTTP status and a one-line reason."""

from __future__ import annotations

from sightx.errors import Rejection, SightXError

# Rejection reasons that mean "this is not an image we read" rather than "this image is unusable".
_UNSUPPORTED = {"not-image"}


class Refused(SightXError):
    """A request answered with `status` and a one-line message (and headers such as Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, str(status))
        self.status = status
        self.headers = headers or {}


def refused_photo(name: str, e: Rejection) -> Refused:
    """415 for what is not a photo at all, 422 for a photo that cannot be graded (truncated, huge, tiny)."""
    return Refused(415 if e.reason in _UNSUPPORTED else 422, f"{name}: {e}")
