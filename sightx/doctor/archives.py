"""What a DATA path holds, from the standard library alone: a folder, a zip, byte-split zip parts
(train.zip.001 ...), the Kaggle competition zip, or a tar. Lists members (never extracts), reads
the label file, and finds the damage a long download leaves: a missing part (named), a truncated
part, an archive without its end record.

This stands in for `sightx.sources` until that package lands; `inspect(path) -> Listing` is the
one entry point the data checks use, so switching is a change inside this module."""

from __future__ import annotations

import csv
import io
import re
import struct
import tarfile
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sightx.doctor.check import FAIL, WARN
from sightx.files.concat import ConcatFile

LABEL_FILE = "trainLabels.csv"  # = sightx.labels.eyepacs.LABEL_FILE (that module imports pandas)
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".tif", ".tiff")  # = sightx.labels.eyepacs.IMAGE_SUFFIXES (stdlib-only copy)
PART = re.compile(r"^(?P<stem>.+\.zip)\.(?P<n>\d{3})$")
# The Kaggle download (diabetic-retinopathy-detection.zip): what it holds, member by member.
KAGGLE_MEMBERS = (
    "sample.zip",
    "sampleSubmission.csv.zip",
    "trainLabels.csv.zip",
    *(f"train.zip.{i:03d}" for i in range(1, 6)),
    *(f"test.zip.{i:03d}" for i in range(1, 8)),
)
REDOWNLOAD = "download it again: sightx-fetch --to DIR (resumes a partial file)"


@dataclass
class Problem:
    status: str  # warn | fail
    text: str
    fix: str = ""


@dataclass
class Listing:
    """One DATA path: its kind, image ids found, label ids (None: no label file), sizes, damage."""

    path: Path
    kind: str  # folder | zip | split-zip | competition | tar | missing | unknown
    images: list[str] = field(default_factory=list)  # image ids (file stems), train images only
    test_images: int = 0
    labels: set[str] | None = None
    label_source: str = ""
    stored_bytes: int = 0  # on disk
    extract_bytes: int = 0  # what extracting everything would write
    empty_images: int = 0
    problems: list[Problem] = field(default_factory=list)


def image_id(name: str) -> str | None:
    """The label file's id for a member or file name, None when it is not a JPEG."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = base.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in IMAGE_SUFFIXES and stem else None


def read_label_ids(text: str, source: str) -> tuple[set[str], list[Problem]]:
    """Ids of a label CSV (image,level), with a problem per kind of bad row."""
    rows = list(csv.reader(io.StringIO(text)))
    header = [c.strip() for c in rows[0]] if rows else []
    if "image" not in header or "level" not in header:
        return set(), [Problem(FAIL, f"{source}: no image,level header (found {','.join(header) or 'nothing'})")]
    i, j = header.index("image"), header.index("level")
    ids, bad = set(), []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) <= max(i, j) or row[j].strip() not in ("0", "1", "2", "3", "4"):
            bad.append(n)
            continue
        ids.add(row[i].strip())
    problems = [Problem(FAIL, f"{source}: {len(bad)} row(s) without a grade 0-4 (line {', '.join(map(str, bad[:5]))})")] if bad else []
    return ids, problems


def inspect(path: Path) -> Listing:
    """Whatever `path` is, listed."""
    if not path.exists():
        parts = sibling_parts(path)
        if parts:
            return _split(path, parts)
        return Listing(path, "missing", problems=[Problem(FAIL, f"{path} does not exist")])
    if path.is_dir():
        return _folder(path)
    m = PART.match(path.name)
    if m:
        return _split(path.with_name(m["stem"]), sibling_parts(path.with_name(m["stem"])))
    if zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":
        return _zip(path)
    if _is_tar(path):
        return _tar(path)
    return Listing(path, "unknown", problems=[Problem(FAIL, f"{path}: not a folder, zip, zip part or tar")])


def sibling_parts(stem: Path) -> dict[int, Path]:
    """train.zip -> {1: train.zip.001, 2: train.zip.002, ...} beside it."""
    if not stem.parent.is_dir():
        return {}
    return {int(m["n"]): p for p in stem.parent.glob(stem.name + ".*") if (m := PART.match(p.name)) and m["stem"] == stem.name}


def _folder(path: Path) -> Listing:
    listing = Listing(path, "folder")
    train = path / "train" if (path / "train").is_dir() else path
    for file in sorted(train.rglob("*")):
        ident = image_id(file.name)
        if ident is not None and file.is_file():
            listing.images.append(ident)
            size = file.stat().st_size
            listing.stored_bytes += size
            listing.empty_images += size == 0
    if train != path and (path / "test").is_dir():
        listing.test_images = sum(1 for f in (path / "test").rglob("*") if image_id(f.name) and f.is_file())
    label = next((d / LABEL_FILE for d in (path, path.parent) if (d / LABEL_FILE).is_file()), None)
    if label is not None:
        listing.labels, listing.problems = read_label_ids(label.read_text(errors="replace"), str(label))
        listing.label_source = str(label)
    listing.extract_bytes = 0  # already extracted
    return listing


def _zip_listing(listing: Listing, zf: zipfile.ZipFile) -> None:
    """Images and labels of an open zip."""
    _zip_images(listing, zf)
    _zip_labels(listing, zf)


def _zip_images(listing: Listing, zf: zipfile.ZipFile) -> None:
    for info in zf.infolist():
        ident = image_id(info.filename)
        if ident is None or info.is_dir():
            continue
        if info.filename.replace("\\", "/").split("/")[0].lower() == "test":
            listing.test_images += 1
        else:
            listing.images.append(ident)
            listing.empty_images += info.file_size == 0
    listing.extract_bytes += sum(i.file_size for i in zf.infolist())


def _zip_labels(listing: Listing, zf: zipfile.ZipFile) -> None:
    """trainLabels.csv as a member, or inside trainLabels.csv.zip (as Kaggle ships it)."""
    names = {i.filename.rsplit("/", 1)[-1]: i.filename for i in zf.infolist()}
    if LABEL_FILE in names:
        listing.labels, problems = read_label_ids(
            zf.read(names[LABEL_FILE]).decode(errors="replace"), f"{listing.path}:{names[LABEL_FILE]}"
        )
        listing.label_source = f"{listing.path}:{names[LABEL_FILE]}"
        listing.problems += problems
    elif LABEL_FILE + ".zip" in names:
        with zipfile.ZipFile(io.BytesIO(zf.read(names[LABEL_FILE + ".zip"]))) as inner:
            member = next((n for n in inner.namelist() if n.endswith(LABEL_FILE)), None)
            if member is None:
                listing.problems.append(Problem(FAIL, f"{listing.path}: {LABEL_FILE}.zip holds no {LABEL_FILE}", REDOWNLOAD))
                return
            source = f"{listing.path}:{LABEL_FILE}.zip:{member}"
            listing.labels, problems = read_label_ids(inner.read(member).decode(errors="replace"), source)
            listing.label_source = source
            listing.problems += problems


def end_record(f: BinaryIO | io.RawIOBase, total: int) -> tuple[int, int, int] | None:
    """(central directory offset, its size, where it must end) from the end-of-archive record
    (zip64 included), or None when the bytes hold no such record: the archive's end is missing."""
    tail_len = min(total, 65_557)  # the record (22 bytes) plus the longest comment
    f.seek(total - tail_len)
    tail = f.read(tail_len)
    i = tail.rfind(b"PK\x05\x06")
    if i < 0 or len(tail) - i < 22:
        return None
    pos = total - tail_len + i
    _, _, _, _, _, cd_size, cd_offset, _ = struct.unpack("<4s4H2LH", tail[i : i + 22])
    locator = b""
    if pos >= 20:
        f.seek(pos - 20)
        locator = f.read(20)
    if locator[:4] != b"PK\x06\x07":  # no zip64 end: the plain record is the whole story
        return cd_offset, cd_size, pos
    z64 = struct.unpack("<4sLQL", locator)[2]
    if z64 + 56 > total:
        return -1, 0, pos - 20
    f.seek(z64)
    record = f.read(56)
    if record[:4] != b"PK\x06\x06":
        return -1, 0, pos - 20  # the zip64 record is not where the locator says: bytes missing before it
    cd_size, cd_offset = struct.unpack("<2Q", record[40:56])
    return cd_offset, cd_size, z64


def check_end(f: BinaryIO | io.RawIOBase, total: int, last: str) -> Problem | None:
    """A missing end record, or a central directory not ending where the record says: bytes lost."""
    record = end_record(f, total)
    if record is None:
        return Problem(FAIL, f"{last} is truncated: no end-of-archive record (or parts after it are missing)", REDOWNLOAD)
    cd_offset, cd_size, end = record
    if cd_offset < 0 or cd_offset + cd_size != end:
        missing = end - (cd_offset + cd_size) if cd_offset >= 0 else None
        how = (
            f"{abs(missing):,} bytes {'fewer' if missing < 0 else 'more'} than the archive records"
            if missing is not None
            else "a damaged end record"
        )
        return Problem(FAIL, f"{last}: {how}: a part is truncated or missing", REDOWNLOAD)
    return None


def _zip(path: Path) -> Listing:
    listing = Listing(path, "zip", stored_bytes=path.stat().st_size)
    with path.open("rb") as f:
        problem = check_end(f, listing.stored_bytes, path.name)
    if problem is not None:
        listing.problems.append(problem)
        return listing
    try:
        with zipfile.ZipFile(path) as zf:
            if any(PART.match(n) or n in KAGGLE_MEMBERS for n in zf.namelist()):
                return competition(path, zf, listing)
            _zip_listing(listing, zf)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        listing.problems.append(Problem(FAIL, f"{path.name}: unreadable zip ({e})", REDOWNLOAD))
    return listing


@dataclass(frozen=True)
class Part:
    name: str
    size: int
    open: Callable[[], BinaryIO]
    offset: int = 0  # where the part's bytes start in what `open` opens
    seekable: bool = True  # False: a compressed member, readable only from its start


def check_parts(stem: str, parts: dict[int, Part]) -> tuple[list[Problem], ConcatFile | None]:
    """Missing parts by name, truncated ones by size, and the joined archive's end record; the
    joined file when it can be read as one zip."""
    if not parts:
        return [Problem(FAIL, f"no {stem}.001 ... parts found", REDOWNLOAD)], None
    last = max(parts)
    problems = [Problem(FAIL, f"missing part {stem}.{n:03d}", REDOWNLOAD) for n in range(1, last + 1) if n not in parts]
    sizes = Counter(parts[n].size for n in parts if n != last)
    if sizes:
        common = max(sizes)  # a split's parts are equal but the last: a shorter one lost bytes
        for n in sorted(parts):
            if n != last and parts[n].size < common:
                problems.append(
                    Problem(FAIL, f"{parts[n].name} is truncated: {parts[n].size:,} bytes, the other parts {common:,}", REDOWNLOAD)
                )
        if parts[last].size > common:
            problems.append(Problem(FAIL, f"{parts[last].name} is larger than the parts before it: not from the same split", REDOWNLOAD))
    if problems:
        return problems, None
    ordered = [parts[n] for n in sorted(parts)]
    if not all(p.seekable for p in ordered):
        return [], None
    joined = ConcatFile([p.size for p in ordered], [p.open for p in ordered], [p.offset for p in ordered])
    problem = check_end(joined, sum(p.size for p in ordered), parts[last].name)
    if problem is not None:
        joined.close()
        return [problem], None
    return [], joined


def _split(stem: Path, files: dict[int, Path]) -> Listing:
    parts = {n: Part(p.name, p.stat().st_size, lambda p=p: p.open("rb")) for n, p in files.items()}  # type: ignore[misc]
    listing = Listing(stem, "split-zip", stored_bytes=sum(p.size for p in parts.values()))
    problems, joined = check_parts(stem.name, parts)
    listing.problems += problems
    if joined is not None:
        _read_joined(listing, joined)
    label = next((d / LABEL_FILE for d in (stem.parent,) if (d / LABEL_FILE).is_file()), None)
    if listing.labels is None and label is not None:
        listing.labels, more = read_label_ids(label.read_text(errors="replace"), str(label))
        listing.label_source = str(label)
        listing.problems += more
    return listing


def _read_joined(listing: Listing, joined: ConcatFile) -> None:
    try:
        with zipfile.ZipFile(joined) as zf:
            _zip_listing(listing, zf)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        listing.problems.append(Problem(FAIL, f"{listing.path.name}: its central directory is unreadable ({e})", REDOWNLOAD))
    finally:
        joined.close()


def competition(path: Path, zf: zipfile.ZipFile, listing: Listing) -> Listing:
    """The competition zip: expected members present, each part group complete and of consistent
    sizes, the inner train archive's central directory readable (where its parts are stored, so
    seeking inside them is free), and the labels read from trainLabels.csv.zip."""
    listing.kind = "competition"
    infos = {i.filename: i for i in zf.infolist()}
    listing.extract_bytes = sum(i.file_size for i in infos.values())
    groups: dict[str, dict[int, Part]] = {}
    with path.open("rb") as raw:
        for name, info in infos.items():
            m = PART.match(name)
            if m:
                groups.setdefault(m["stem"], {})[int(m["n"])] = _member_part(path, raw, info)
    for name in KAGGLE_MEMBERS:
        m = PART.match(name)
        named_by_parts = m is not None and m["stem"] in groups and int(m["n"]) < max(groups[m["stem"]])
        if name not in infos and not named_by_parts:
            listing.problems.append(Problem(FAIL, f"{path.name} lacks {name}", REDOWNLOAD))
    for stem in sorted(groups):
        problems, joined = check_parts(stem, groups[stem])
        listing.problems += problems
        if joined is None:
            if not problems:
                listing.problems.append(
                    Problem(WARN, f"{stem} parts are compressed inside {path.name}: their contents are checked after extracting it")
                )
            continue
        inner = Listing(path, "zip")
        _read_joined(inner, joined)
        listing.problems += inner.problems
        listing.extract_bytes += inner.extract_bytes
        if stem.startswith("train"):
            listing.images += inner.images
        else:
            listing.test_images += len(inner.images) + inner.test_images
    _zip_labels(listing, zf)
    return listing


def _member_part(path: Path, raw: BinaryIO, info: zipfile.ZipInfo) -> Part:
    """A member of the outer zip as a part: a window of the outer file when stored (seeking is free
    on every Python), a forward-only member stream when compressed."""
    if info.compress_type != zipfile.ZIP_STORED:
        return Part(info.filename, info.file_size, lambda: path.open("rb"), seekable=False)
    raw.seek(info.header_offset)
    header = raw.read(30)
    name_len, extra_len = struct.unpack("<2H", header[26:30])
    return Part(info.filename, info.file_size, lambda: path.open("rb"), offset=info.header_offset + 30 + name_len + extra_len)


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _tar(path: Path) -> Listing:
    listing = Listing(path, "tar", stored_bytes=path.stat().st_size)
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                listing.extract_bytes += member.size
                ident = image_id(member.name)
                if ident is not None:
                    listing.images.append(ident)
                    listing.empty_images += member.size == 0
                elif member.name.rsplit("/", 1)[-1] == LABEL_FILE:
                    handle = tf.extractfile(member)
                    text = handle.read().decode(errors="replace") if handle else ""
                    listing.labels, problems = read_label_ids(text, f"{path}:{member.name}")
                    listing.label_source = f"{path}:{member.name}"
                    listing.problems += problems
    except (tarfile.TarError, EOFError, OSError) as e:
        listing.problems.append(Problem(FAIL, f"{path.name} is truncated or damaged ({e})", REDOWNLOAD))
    return listing
