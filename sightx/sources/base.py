"""What every source is: a list of image members (name, size) and a way to get each member's bytes.

A source is picklable as a description (its paths), never as open handles: a `spawn` worker
unpickles it and opens the archive itself, once per process (`reopen` keeps it per process).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from sightx.errors import Rejection, SightXError
from sightx.files.names import recorded
from sightx.image.formats import IMAGE_SUFFIXES

# An image member declaring more than this, or expanding more than MAX_RATIO times its stored size,
# is refused from its header before a byte is inflated: no fundus photo comes near either.
MAX_MEMBER_BYTES = 1 << 30
MAX_RATIO = 100
_RATIO_FLOOR = 1 << 20  # below this size a high ratio is harmless (e.g. a blank test image)


class SourceError(SightXError):
    """An archive that cannot be read as a whole (missing part, not a zip, encrypted...): one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "bad-source")


@dataclass(frozen=True)
class Member:
    """One image in a source: its safe path inside the source (what shards record) and its size."""

    name: str
    size: int


def safe_name(raw: str) -> str:
    """The member's path with `..`, `.`, empty parts, drive letters and leading slashes removed, its
    bytes that are not UTF-8 as `\\xHH` (sightx.files.names).

    Members are only ever read, never written; this keeps a hostile name (`../../etc/x.jpeg`,
    `/abs.jpeg`, `C:\\x.jpeg`) from reaching a key, a log line or a report as a path.
    """
    parts = [p for p in raw.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if parts and len(parts[0]) == 2 and parts[0][1] == ":":
        parts = parts[1:]
    return recorded("/".join(parts))


def unique_name(name: str, taken: Collection[str]) -> str:
    """`name`, or `name~2`, `name~3`... when an earlier member has it (a zip may repeat a name, and
    `a.jpeg` and `../a.jpeg` are both `a.jpeg` once safe): every member stays listed, and the
    plan rejects the repeats as duplicate-id (same image id), so inputs = written + rejected."""
    n, unique = 1, name
    while unique in taken:
        n += 1
        unique = f"{name}~{n}"
    return unique


def is_image(name: str) -> bool:
    """An image by suffix; macOS resource forks (`__MACOSX/`, `._x.jpeg`) in archives are not."""
    path = PurePosixPath(name)
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("._") and "__MACOSX" not in path.parts


def listing_order(names: Collection[str]) -> list[str]:
    """The one order every source lists in (by path parts, as sorted Paths are): same plan, same bytes."""
    return sorted(names, key=lambda n: PurePosixPath(n).parts)


def check_declared_size(archive: str, name: str, size: int, stored: int | None) -> None:
    """Refuse a zip bomb from its header: a huge declared size or expansion ratio (`stored` None: unknown)."""
    if size > MAX_MEMBER_BYTES:
        raise SourceError(f"{archive}: member {name} declares {size:,} bytes (limit {MAX_MEMBER_BYTES:,}): refusing a possible zip bomb")
    if stored is not None and size > _RATIO_FLOOR and size > MAX_RATIO * max(stored, 1):
        raise SourceError(
            f"{archive}: member {name} expands {size / max(stored, 1):,.0f}x ({stored:,} -> {size:,} bytes): refusing a possible zip bomb"
        )


_OPEN: dict[tuple[Any, ...], Source] = {}


def reopen(cls: type[Source], args: tuple[Any, ...]) -> Source:
    """Unpickling a source: one open instance per process and description."""
    key = (cls, *args)
    if key not in _OPEN:
        _OPEN[key] = cls(*args)
    return _OPEN[key]


class Source(ABC):
    """A place images are read from. `random_access` sources read any member at any time (workers
    read their own); the others are read in one `stream` pass fed to the workers."""

    random_access: ClassVar[bool] = True

    @abstractmethod
    def describe(self) -> tuple[Any, ...]:
        """The constructor arguments: all a worker needs to open the same source."""

    @abstractmethod
    def members(self) -> list[Member]:
        """The image members, in `listing_order`."""

    def inventory(self) -> tuple[list[Member], list[tuple[str, str]]]:
        """The members, and the entries named like images that are not regular files (name, what they
        are: counted as inputs and rejected, never opened). Archives hold only files, so only a folder
        has the latter; it lists both in one scan."""
        return self.members(), []

    @abstractmethod
    def label_folders(self) -> list[Path]:
        """Folders where the label file of this source would sit, nearest first."""

    def read(self, name: str) -> bytes:
        """One member's bytes; a member that cannot be read raises Rejection (unreadable, corrupt-member)."""
        raise NotImplementedError(f"{type(self).__name__} is read as a stream")

    def stream(self, names: Collection[str]) -> Iterator[tuple[str, bytes | Rejection]]:
        """The named members in archive order, each as bytes or the Rejection that stopped it."""
        for name in names:
            try:
                yield name, self.read(name)
            except Rejection as e:
                yield name, e

    def inner_file(self, name: str) -> tuple[bytes, str] | None:
        """A non-image file carried inside the source (a label file), with a description of where."""
        return None

    def __reduce__(self) -> tuple[Any, ...]:
        return reopen, (type(self), self.describe())

    def __str__(self) -> str:
        return str(self.describe()[0])
