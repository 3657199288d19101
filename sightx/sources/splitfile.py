"""Byte-split parts (`train.zip.001`, `.002`, ...) read as one seekable file: no joined copy on disk."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sightx.files.concat import ConcatFile
from sightx.sources.base import SourceError

_PART = re.compile(r"^(?P<stem>.+)\.(?P<number>\d{3})$")


def is_part(path: Path) -> bool:
    return _PART.match(path.name) is not None


def find_parts(path: Path) -> list[Path]:
    """The parts of a split file named by any of its parts (`train.zip.001`) or by the folder holding them.

    Numbering must run from 001 without a gap (every missing part is named), and every part but
    the last must be as long as the longest of them (`check_sizes`): either failure names the
    part to fetch again.
    """
    if path.is_dir():
        stems = sorted({m["stem"] for p in path.iterdir() if (m := _PART.match(p.name))})
        if len(stems) != 1:
            found = ", ".join(stems) or "none"
            raise SourceError(f"{path}: expected the parts of one split file (NAME.001, NAME.002, ...), found {found}")
        stem, folder = stems[0], path
    else:
        match = _PART.match(path.name)
        if match is None:
            raise SourceError(f"{path} is not a split part (NAME.001)")
        stem, folder = match["stem"], path.parent
    numbers = sorted(int(m["number"]) for p in folder.iterdir() if (m := _PART.match(p.name)) and m["stem"] == stem)
    expected = list(range(1, len(numbers) + 1))
    if numbers != expected:
        missing = sorted(set(range(1, max(numbers, default=0) + 1)) - set(numbers))
        detail = missing_text(stem, missing) if missing else f"numbering starts at {stem}.{numbers[0]:03d}, not .001"
        raise SourceError(f"{folder}: {detail} (found {len(numbers)} part(s)): download it again")
    parts = [folder / f"{stem}.{n:03d}" for n in numbers]
    check_sizes([(str(p), p.stat().st_size) for p in parts])
    return parts


def missing_text(stem: str, missing: list[int]) -> str:
    """`train.zip.002 is missing`, or `train.zip.002, train.zip.004 are missing`: every gap named at once,
    so one more download fetches them all."""
    names = ", ".join(f"{stem}.{n:03d}" for n in missing)
    return f"{names} {'is' if len(missing) == 1 else 'are'} missing"


def check_sizes(parts: list[tuple[str, int]], where: str = "") -> None:
    """(name, size) of the parts of a byte split, in order (`where`: what holds them, for messages).
    Its parts are equal but the last, and a broken download only ever loses bytes: a part shorter
    than the longest before the last is truncated (named, whichever it is), a last part longer
    than them is from another split."""
    if len(parts) < 2:
        return
    at = f"{where}: " if where else ""
    full_name, full = max(parts[:-1], key=lambda p: p[1])
    for name, size in parts[:-1]:
        if size < full:
            raise SourceError(f"{at}{name} is {size:,} bytes where {full_name} is {full:,}: a truncated download, fetch it again")
    if parts[-1][1] > full:
        raise SourceError(f"{at}{parts[-1][0]} is longer than {full_name}: not parts of one byte split")


def _opener(path: Path) -> Callable[[], BinaryIO]:
    def open_part() -> BinaryIO:
        return open(path, "rb")

    return open_part


class SplitFile(ConcatFile):
    """The concatenation of the part files, read-only with random access."""

    def __init__(self, parts: list[Path]) -> None:
        super().__init__([p.stat().st_size for p in parts], [_opener(p) for p in parts])
        self.parts = parts
