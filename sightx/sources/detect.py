"""Open whatever the user points at: a folder, a zip, split parts, the competition zip or a tar."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from sightx.image.formats import IMAGE_SUFFIXES
from sightx.sources.base import Source, SourceError
from sightx.sources.competition import CompetitionSource, is_competition_zip
from sightx.sources.folder import FolderSource
from sightx.sources.splitfile import find_parts, is_part
from sightx.sources.tarsource import COMPRESSED_SUFFIXES, CompressedTarSource, TarSource
from sightx.sources.zipsource import ZipSource, open_zip


def open_source(path: Path, unlabeled: bool = False) -> Source:
    """The source at `path`. In the competition zip, `unlabeled` picks the test images, else the train ones."""
    if not path.exists():
        raise SourceError(f"input {path} does not exist")
    if path.is_dir():
        return _folder(path)
    name = path.name.lower()
    try:
        if is_part(path):
            parts = find_parts(path)
            return ZipSource(str(parts[0]), tuple(map(str, parts)))
        if name.endswith(COMPRESSED_SUFFIXES):
            return CompressedTarSource(str(path))
        if name.endswith(".tar"):
            return TarSource(str(path))
        if name.endswith(".zip") or zipfile.is_zipfile(path):
            return _zip(path, unlabeled)
        if tarfile.is_tarfile(path):
            return TarSource(str(path))
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from None
    raise SourceError(f"{path} is not a folder, zip, split zip (NAME.zip.001) or tar")


def is_archive(path: Path) -> bool:
    """A zip, split parts (by a part or their folder) or compressed tar: what a list of photos to
    grade may name besides loose images and shard tars (a plain .tar there is a shard)."""
    if path.is_dir():
        return _parts_folder(path)
    name = path.name.lower()
    return is_part(path) or name.endswith((".zip", *COMPRESSED_SUFFIXES))


def _parts_folder(path: Path) -> bool:
    entries = list(path.iterdir())
    return any(is_part(p) for p in entries) and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in entries)


def _folder(path: Path) -> Source:
    """A folder of images; one holding only the parts of a split zip is that zip."""
    if _parts_folder(path):
        parts = find_parts(path)
        return ZipSource(str(parts[0]), tuple(map(str, parts)))
    return FolderSource(str(path))


def _zip(path: Path, unlabeled: bool) -> Source:
    with open(path, "rb") as f, open_zip(f, str(path)) as zf:
        competition = is_competition_zip(zf.namelist())
    if competition:
        return CompetitionSource(str(path), "test" if unlabeled else "train")
    return ZipSource(str(path))
