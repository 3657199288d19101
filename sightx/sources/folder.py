"""A folder of loose images, as SightX always read them."""

from __future__ import annotations

from pathlib import Path

from sightx.errors import Rejection
from sightx.files.names import original, recorded
from sightx.labels.eyepacs import find_inputs
from sightx.sources.base import Member, Source, listing_order


class FolderSource(Source):
    """Images anywhere under `root`; member names are paths relative to it."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def describe(self) -> tuple[str]:
        return (str(self.root),)

    def members(self) -> list[Member]:
        return self.inventory()[0]

    def inventory(self) -> tuple[list[Member], list[tuple[str, str]]]:
        files, others = find_inputs(self.root)
        found = []
        for path in files:
            try:
                size = path.stat().st_size
            except OSError:
                size = 0  # vanished or unreadable: read() records why
            found.append(Member(self._name(path), size))
        order = {n: i for i, n in enumerate(listing_order([m.name for m in found]))}
        not_files = [(self._name(path), what) for path, what in others]
        return sorted(found, key=lambda m: order[m.name]), not_files

    def _name(self, path: Path) -> str:
        return recorded(path.relative_to(self.root).as_posix())

    def label_folders(self) -> list[Path]:
        return [self.root, self.root.parent]

    def read(self, name: str) -> bytes:
        """The member recorded as `name`: the file of that name, else the one whose bytes it escapes."""
        try:
            try:
                return (self.root / name).read_bytes()
            except FileNotFoundError:
                if original(name) == name:
                    raise
                return (self.root / original(name)).read_bytes()
        except OSError as e:
            raise Rejection("unreadable", e.strerror or str(e)) from None
