"""A zip (Zip64 included), on disk or as byte-split parts, read with random access.

Everything that can be known from the central directory is checked when the source opens (not a
zip, damaged or truncated directory, encryption, unsupported compression, zip bombs, bytes missing
before the directory); damage inside one member (bad CRC, truncated data) is that member's
`corrupt-member` rejection when it is read.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

from sightx.errors import Rejection, describe
from sightx.sources.base import Member, Source, SourceError, check_declared_size, is_image, listing_order, safe_name, unique_name
from sightx.sources.splitfile import SplitFile
from sightx.sources.unpack import INFLATABLE, unpack

SUPPORTED_COMPRESSION = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
_LOCAL_HEADER = b"PK\x03\x04"
LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # a member's fixed local header, up to the name and extra field lengths
_DIRECTORY_ERRORS = (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error, OverflowError)
_MEMBER_ERRORS = (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error, NotImplementedError, struct.error, OverflowError)


def open_zip(fp: BinaryIO, label: str, split: bool = False) -> zipfile.ZipFile:
    """zipfile over `fp`, its failures as one line saying what is wrong with the download."""
    try:
        return zipfile.ZipFile(fp)
    except UnicodeDecodeError as e:  # zipfile decodes flagged names strictly, and only so
        fp.close()
        raise SourceError(
            f"{label}: a member name is marked UTF-8 but is not (byte {e.object[e.start]:#04x} of {bytes(e.object)!r}): "
            "the zip was written wrongly and Python's zipfile cannot list it; re-pack it"
        ) from None
    except _DIRECTORY_ERRORS as e:
        fp.close()
        if "not a zip file" in str(e):
            if split:
                raise SourceError(f"{label}: no zip end record at the end of the last part: a part is missing or truncated") from None
            raise SourceError(
                f"{label} is not a zip archive (no end-of-central-directory record): truncated download or another format"
            ) from None
        raise SourceError(f"{label}: damaged central directory ({describe(e)})") from None


def local_lengths(header: bytes) -> tuple[int, int]:
    """(name length, extra field length) from a member's fixed local header, read where the central
    directory puts it; BadZipFile when there is none there."""
    if len(header) < LOCAL_HEADER.size or header[:4] != _LOCAL_HEADER:
        raise zipfile.BadZipFile("no local header at the offset the central directory gives")
    *_, name_length, extra_length = LOCAL_HEADER.unpack(header)
    return name_length, extra_length


def encoded_name(info: zipfile.ZipInfo) -> bytes:
    """The name's bytes as the archive holds them (UTF-8 when flagged, else code page 437)."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "surrogateescape")


def check_entry(label: str, name: str, info: zipfile.ZipInfo, methods: Collection[int] = SUPPORTED_COMPRESSION) -> None:
    """Refuse what cannot be read from its central-directory entry alone."""
    if info.flag_bits & 0x1:
        raise SourceError(f"{label} is encrypted ({name}): SightX reads archives without a password only")
    if info.compress_type not in methods:
        raise SourceError(f"{label}: {name} uses zip compression method {info.compress_type}, which SightX cannot read")
    check_declared_size(label, name, info.file_size, info.compress_size)


def check_local_headers(zf: zipfile.ZipFile, fp: BinaryIO, label: str, infos: list[zipfile.ZipInfo]) -> None:
    """The first and last members' local headers are where the directory says: bytes missing or
    added before the directory (a truncated middle part) show here, before any work starts."""
    if not infos:
        return
    ordered = sorted(infos, key=lambda i: i.header_offset)
    for info in (ordered[0], ordered[-1]):
        ok = info.header_offset >= 0
        if ok:
            fp.seek(info.header_offset)
            ok = fp.read(4) == _LOCAL_HEADER
        if not ok:
            raise SourceError(
                f"{label}: {info.filename} is not at the offset the central directory gives: bytes are missing (a truncated part?)"
            )


class ZipSource(Source):
    """Image members of one zip, or of the zip whose byte-split `parts` are given."""

    def __init__(self, path: str, parts: tuple[str, ...] = ()) -> None:
        self.path = path
        self.parts = parts
        self.label = f"{Path(parts[0]).name}..{Path(parts[-1]).name} ({len(parts)} parts)" if parts else path
        fp: BinaryIO = SplitFile([Path(p) for p in parts]) if parts else open(path, "rb")  # type: ignore[assignment]
        self.zip = open_zip(fp, self.label, split=bool(parts))
        self.index: dict[str, zipfile.ZipInfo] = {}
        for info in self.zip.infolist():
            name = safe_name(info.filename)
            if info.is_dir() or not is_image(name):
                continue
            check_entry(self.label, info.filename, info)
            self.index[unique_name(name, self.index)] = info
        check_local_headers(self.zip, fp, self.label, list(self.index.values()))

    def describe(self) -> tuple[str, tuple[str, ...]]:
        return (self.path, self.parts)

    def members(self) -> list[Member]:
        return [Member(n, self.index[n].file_size) for n in listing_order(self.index)]

    def label_folders(self) -> list[Path]:
        first = Path(self.parts[0] if self.parts else self.path)
        return [first.parent, first.parent.parent] if self.parts else [first.parent]

    def read(self, name: str) -> bytes:
        info = self.index[name]
        try:
            if info.compress_type in INFLATABLE:
                return unpack(info, self._stored(info))
            with self.zip.open(info) as f:  # bzip2, lzma: rare in the wild, left to zipfile
                return f.read()
        except _MEMBER_ERRORS as e:
            raise Rejection("corrupt-member", describe(e)) from None

    def _stored(self, info: zipfile.ZipInfo) -> bytes:
        """The member's bytes as stored, found through its local header (whose name must be the
        directory's, as zipfile checks)."""
        fp = self.zip.fp
        assert fp is not None, "read after close"
        fp.seek(info.header_offset)
        name_length, extra_length = local_lengths(fp.read(LOCAL_HEADER.size))
        if fp.read(name_length) != encoded_name(info):
            raise zipfile.BadZipFile("the local header names another member")
        fp.seek(extra_length, 1)
        return fp.read(info.compress_size)

    def inner_file(self, name: str) -> tuple[bytes, str] | None:
        """A label file packed beside the images (any folder inside the zip)."""
        for info in self.zip.infolist():
            if Path(safe_name(info.filename)).name == name and not info.is_dir():
                check_entry(self.label, info.filename, info)
                try:
                    return self.zip.read(info), f"{self.label}:{info.filename}"
                except _MEMBER_ERRORS as e:
                    raise SourceError(f"{self.label}: cannot read {info.filename} ({describe(e)})") from None
        return None

    def __str__(self) -> str:
        return self.label
