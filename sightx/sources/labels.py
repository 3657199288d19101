"""The label file that goes with a source: inside it (the competition zip), else beside it.

Beside it, Kaggle's trainLabels.csv(.zip) comes first; failing that, the one label file of
another DR set (APTOS train.csv, IDRiD, Messidor-2, DDR train.txt) recognised by its header.
"""

from __future__ import annotations

from pathlib import Path

from sightx.labels.files import LABEL_FILE, find_label_in, label_bytes
from sightx.labels.formats import detect
from sightx.sources.base import Source, SourceError

_HEAD = 4096


def find_labels(source: Source) -> tuple[bytes, str] | None:
    """(bytes of the label file, where it was found), or None when there is none."""
    inside = source.inner_file(LABEL_FILE)
    if inside is not None:
        return inside
    path = find_label_in(source.label_folders()) or _other_dataset(source.label_folders())
    return (label_bytes(path), str(path)) if path is not None else None


def _other_dataset(folders: list[Path]) -> Path | None:
    """The one recognised label file in the nearest folder holding any; several is ambiguous."""
    for folder in folders:
        found = [p for p in sorted(folder.glob("*.csv")) + sorted(folder.glob("*.txt")) if _head(p) and detect(_head(p))]
        if len(found) > 1:
            raise SourceError(f"several label files in {folder} ({', '.join(p.name for p in found)}): pass --labels PATH")
        if found:
            return found[0]
    return None


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(_HEAD)
    except OSError:
        return b""
