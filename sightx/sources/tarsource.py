"""Tars of images: a plain `.tar` read with random access, a compressed one (`.tar.gz`...) in one stream pass."""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import ClassVar

from sightx.errors import Rejection, describe
from sightx.sources.base import Member, Source, SourceError, check_declared_size, is_image, listing_order, safe_name, unique_name

COMPRESSED_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_STREAM_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


def _images(tar: tarfile.TarFile, label: str) -> Iterator[tuple[str, tarfile.TarInfo]]:
    """(unique safe name, entry) of each regular image file."""
    seen: set[str] = set()
    try:
        for info in tar:
            name = safe_name(info.name)
            if info.isfile() and is_image(name):
                name = unique_name(name, seen)
                seen.add(name)
                yield name, info
    except _STREAM_ERRORS as e:
        raise SourceError(f"{label}: damaged or truncated tar ({describe(e)})") from None


def _open(path: str, mode: str) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode)  # type: ignore[call-overload]  # mode: 'r:' or 'r|*'
    except _STREAM_ERRORS as e:
        raise SourceError(f"{path} is not a readable tar ({describe(e)})") from None


class TarSource(Source):
    """An uncompressed tar: members are read at the data offsets found by one pass over the headers."""

    def __init__(self, path: str) -> None:
        self.path = path
        with _open(path, "r:") as tar:
            self.index = {name: (info.offset_data, info.size) for name, info in _images(tar, path)}
        self.file = open(path, "rb")

    def describe(self) -> tuple[str]:
        return (self.path,)

    def members(self) -> list[Member]:
        return [Member(n, self.index[n][1]) for n in listing_order(self.index)]

    def label_folders(self) -> list[Path]:
        return [Path(self.path).parent]

    def read(self, name: str) -> bytes:
        offset, size = self.index[name]
        try:
            self.file.seek(offset)
            data = self.file.read(size)
        except OSError as e:
            raise Rejection("corrupt-member", describe(e)) from None
        if len(data) != size:
            raise Rejection("corrupt-member", f"truncated: {len(data)} of {size} bytes")
        return data


class CompressedTarSource(Source):
    """A compressed tar has no random access: list it in one pass, read it in another."""

    random_access: ClassVar[bool] = False

    def __init__(self, path: str) -> None:
        self.path = path
        with _open(path, "r|*") as tar:
            self.sizes = {name: info.size for name, info in _images(tar, path)}
        for name, size in self.sizes.items():
            check_declared_size(path, name, size, None)  # stored size unknown: the absolute limit only

    def describe(self) -> tuple[str]:
        return (self.path,)

    def members(self) -> list[Member]:
        return [Member(n, self.sizes[n]) for n in listing_order(self.sizes)]

    def label_folders(self) -> list[Path]:
        return [Path(self.path).parent]

    def stream(self, names: Collection[str]) -> Iterator[tuple[str, bytes | Rejection]]:
        wanted = set(names)
        try:
            with _open(self.path, "r|*") as tar:
                for name, info in _images(tar, self.path):
                    if name in wanted:
                        f = tar.extractfile(info)
                        data = f.read() if f is not None else b""
                        wanted.discard(name)  # only once read: a failed read is rejected below
                        yield name, data
        except (SourceError, *_STREAM_ERRORS) as e:
            for name in listing_order(wanted):
                yield name, Rejection("corrupt-member", f"archive unreadable before this member ({describe(e)})")
            return
        for name in listing_order(wanted):
            yield name, Rejection("corrupt-member", "not found in the archive")
