"""The bytes of a few chosen members (report galleries, worst photos), whatever the source.

A random-access source reads each one when asked; a streamed one cannot, so the names are
fetched together in one pass beforehand (`fetch`) and held until used: a handful of photos.
"""

from __future__ import annotations

from collections.abc import Collection

from sightx.errors import Rejection
from sightx.sources.base import Source


class Picked:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.held: dict[str, bytes | None] = {}

    def fetch(self, names: Collection[str]) -> None:
        """Read `names` now if the source is a stream (one pass for all of them); no-op otherwise."""
        wanted = [n for n in names if n not in self.held]
        if self.source.random_access or not wanted:
            return
        for name, data in self.source.stream(wanted):
            self.held[name] = None if isinstance(data, Rejection) else data

    def read(self, name: str) -> bytes | None:
        """The member's bytes, or None when it cannot be read (or was not fetched from a stream)."""
        if not self.source.random_access:
            return self.held.get(name)
        try:
            return self.source.read(name)
        except Rejection:
            return None
