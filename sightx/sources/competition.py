"""Kaggle's competition zip as downloaded: an outer zip whose deflated members are the byte-split parts
of `train.zip` / `test.zip`, plus `trainLabels.csv.zip`.

The outer members are deflated, so the inner zip has no random access. Its central directory is
read from the tail of the inflated last part(s); the images are then read in one forward pass,
inflating the parts in order and reading each wanted member at the offset the directory gives
(stored or deflated, CRC checked). Nothing is written: the inner zip exists only as a stream.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, ClassVar

from sightx.errors import Rejection, describe
from sightx.files.concat import SeekableReader
from sightx.sources.base import Member, Source, SourceError, is_image, listing_order, safe_name, unique_name
from sightx.sources.splitfile import check_sizes, missing_text
from sightx.sources.unpack import INFLATABLE, unpack
from sightx.sources.zipsource import _MEMBER_ERRORS, LOCAL_HEADER, check_entry, local_lengths, open_zip

SUBSETS = ("train", "test")
_PART = re.compile(r"^(?P<subset>train|test)\.zip(\.(?P<number>\d{3}))?$")
_TAIL_BYTES = 64 << 20  # room for the inner central directory: ~8 MB for all 88,702 EyePACS photos
_CHUNK = 1 << 20


def is_competition_zip(names: Collection[str]) -> bool:
    """An outer zip holding train.zip / test.zip (whole or split) and no images of its own."""
    return any(_PART.match(safe_name(n)) for n in names) and not any(is_image(safe_name(n)) for n in names)


def subsets(names: Collection[str]) -> list[str]:
    """The SUBSETS whose zip (whole or any part of it) the outer zip's `names` hold."""
    found = {m["subset"] for n in names if (m := _PART.match(safe_name(n)))}
    return [s for s in SUBSETS if s in found]


class _Chain:
    """The inflated outer parts, one after another, as a forward-only byte stream."""

    def __init__(self, outer: zipfile.ZipFile, parts: list[zipfile.ZipInfo]) -> None:
        self.outer = outer
        self.parts = iter(parts)
        self.current: IO[bytes] | None = None
        self.pos = 0

    def read(self, n: int) -> bytes:
        chunks = []
        while n > 0:
            if self.current is None:
                part = next(self.parts, None)
                if part is None:
                    break
                self.current = self.outer.open(part)
            data = self.current.read(min(n, _CHUNK))
            if not data:
                self.current.close()
                self.current = None
                continue
            chunks.append(data)
            n -= len(data)
            self.pos += len(data)
        return b"".join(chunks)

    def skip(self, n: int) -> None:
        while n > 0:
            data = self.read(min(n, _CHUNK))
            if not data:
                raise EOFError("the inner zip ends early")
            n -= len(data)


class _Tail(SeekableReader):
    """A file of `size` bytes of which only the last len(tail) are known: enough for zipfile to read
    the end record and the central directory. `short` says a read fell before the known bytes."""

    def __init__(self, size: int, tail: bytes) -> None:
        super().__init__(size)
        self.tail, self.start = tail, size - len(tail)
        self.short = False

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.pos < self.start:
            self.short = True
            raise OSError(f"central directory starts over {len(self.tail):,} bytes before the end of the inner zip")
        data = self.tail[self.pos - self.start : self.pos - self.start + len(buffer)]
        memoryview(buffer).cast("B")[: len(data)] = data
        self.pos += len(data)
        return len(data)


class CompetitionSource(Source):
    """The `subset` (train or test) images of the competition zip at `path`, read as a stream."""

    random_access: ClassVar[bool] = False

    def __init__(self, path: str, subset: str = "train") -> None:
        self.path, self.subset = path, subset
        self.outer = open_zip(open(path, "rb"), path)
        self.parts = self._parts()
        self.label = f"{path}:{self.parts[0].filename}" + (f"..{self.parts[-1].filename}" if len(self.parts) > 1 else "")
        self.index = self._directory()

    def _parts(self) -> list[zipfile.ZipInfo]:
        numbered: dict[int, zipfile.ZipInfo] = {}
        for info in self.outer.infolist():
            m = _PART.match(safe_name(info.filename))
            if m and m["subset"] == self.subset:
                check_entry(self.path, info.filename, info)
                numbered[int(m["number"] or 0)] = info
        if not numbered:
            raise SourceError(f"{self.path} holds no {self.subset}.zip or {self.subset}.zip.001 ...")
        expected = list(range(1, len(numbered) + 1)) if 0 not in numbered else [0]
        if sorted(numbered) != expected:
            missing = sorted(set(range(1, max(numbered) + 1)) - set(numbered))
            raise SourceError(f"{self.path}: {missing_text(self.subset + '.zip', missing)} from the download: fetch it again")
        parts = [numbered[n] for n in expected]
        check_sizes([(p.filename, p.file_size) for p in parts], self.path)
        return parts

    def _directory(self) -> dict[str, zipfile.ZipInfo]:
        """The inner zip's central directory, from the inflated tail of its last part, or of its
        last few parts when the directory starts before the last one: inflating a part is the
        price of seeing its end (Kaggle's last parts are the small remainders of 8 GiB splits)."""
        for first in range(len(self.parts) - 1, -1, -1):
            tail = self._tail(first)
            try:
                inner = open_zip(tail, self.label, split=True)  # type: ignore[arg-type]
                break
            except SourceError:
                if not (tail.short and first > 0 and len(tail.tail) < _TAIL_BYTES):  # more parts can only help a tail not yet full
                    raise
        index: dict[str, zipfile.ZipInfo] = {}
        for info in inner.infolist():
            name = safe_name(info.filename)
            if info.is_dir() or not is_image(name):
                continue
            check_entry(self.label, info.filename, info, INFLATABLE)
            if info.header_offset < 0:
                raise SourceError(f"{self.label}: bytes are missing before the central directory (a truncated part?)")
            index[unique_name(name, index)] = info
        return index

    def _tail(self, first: int) -> _Tail:
        """The last _TAIL_BYTES of the inflated parts from `first` on, as the end of the inner zip."""
        tail = bytearray()
        try:
            chain = _Chain(self.outer, self.parts[first:])
            while block := chain.read(_CHUNK):
                tail += block
                del tail[:-_TAIL_BYTES]
        except _MEMBER_ERRORS as e:
            raise SourceError(f"{self.label}: damaged download ({describe(e)})") from None
        return _Tail(sum(p.file_size for p in self.parts), bytes(tail))

    def describe(self) -> tuple[str, str]:
        return (self.path, self.subset)

    def members(self) -> list[Member]:
        return [Member(n, self.index[n].file_size) for n in listing_order(self.index)]

    def label_folders(self) -> list[Path]:
        return [Path(self.path).parent] if self.subset == "train" else []  # the test images have no labels

    def inner_file(self, name: str) -> tuple[bytes, str] | None:
        """`name` or `name`.zip (Kaggle ships trainLabels.csv.zip) among the outer members; the
        train labels only go with the train images."""
        if self.subset != "train":
            return None
        for info in self.outer.infolist():
            outer_name = Path(safe_name(info.filename)).name
            if outer_name not in (name, name + ".zip"):
                continue
            check_entry(self.path, info.filename, info)
            try:
                data = self.outer.read(info)
                if outer_name == name:
                    return data, f"{self.path}:{info.filename}"
                nested = open_zip(io.BytesIO(data), f"{self.path}:{info.filename}")
                for inner in nested.infolist():
                    if Path(safe_name(inner.filename)).name == name:
                        check_entry(f"{self.path}:{info.filename}", inner.filename, inner)
                        return nested.read(inner), f"{self.path}:{info.filename}:{inner.filename}"
            except _MEMBER_ERRORS as e:
                raise SourceError(f"{self.path}: cannot read {info.filename} ({describe(e)})") from None
        return None

    def stream(self, names: Collection[str]) -> Iterator[tuple[str, bytes | Rejection]]:
        """One forward pass: skip to each wanted member, read its local header and data, inflate, check."""
        wanted = sorted(((self.index[n], n) for n in names), key=lambda x: x[0].header_offset)
        chain = _Chain(self.outer, self.parts)
        for i, (info, name) in enumerate(wanted):
            if info.header_offset < chain.pos:
                yield name, Rejection("corrupt-member", "overlaps the member before it")
                continue
            try:
                chain.skip(info.header_offset - chain.pos)
                name_length, extra_length = local_lengths(chain.read(LOCAL_HEADER.size))
                chain.skip(name_length + extra_length)
                stored = chain.read(info.compress_size)
            except _MEMBER_ERRORS as e:
                for _, rest in wanted[i:]:
                    yield rest, Rejection("corrupt-member", f"archive unreadable before this member ({describe(e)})")
                return
            yield name, _unpacked(info, stored)


def _unpacked(info: zipfile.ZipInfo, stored: bytes) -> bytes | Rejection:
    try:
        return unpack(info, stored)
    except Rejection as e:
        return e
