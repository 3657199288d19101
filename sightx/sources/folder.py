"""A folder of loose images, as SightX always read them."""

from __future__ import annotations

from pathlib import Path

from sightx.errors import Rejection
from sightx.files.names import original, recorded
from sightx.files.regular import NotARegularFile, not_a_file, read_regular
from sightx.image.formats import IMAGE_SUFFIXES
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
                return read_regular(self.root / name)
            except FileNotFoundError:
                if original(name) == name:
                    raise
                return read_regular(self.root / original(name))
        except NotARegularFile as e:
            raise Rejection("not-a-file", e.what) from None
        except OSError as e:
            raise Rejection("unreadable", e.strerror or str(e)) from None


def find_images(raw: Path) -> list[Path]:
    """All JPEGs under raw/, recursively, case-insensitive suffix, in a stable order (regular files only)."""
    return find_inputs(raw)[0]


def find_inputs(raw: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Everything under raw/ named like a JPEG: the regular files (or symlinks to them), and the rest
    (dangling symlinks, loops, FIFOs, folders) with what each is, so none of them vanishes unaccounted."""
    images, others = [], []
    for p in sorted(raw.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            what = not_a_file(p)
            if what is None:
                images.append(p)
            else:
                others.append((p, what))
    return images, others
