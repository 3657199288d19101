"""The label file that goes with a source: inside it (the competition zip), else beside it."""

from __future__ import annotations

from sightx.labels import LABEL_FILE, find_label_in, label_bytes
from sightx.sources.base import Source


def find_labels(source: Source) -> tuple[bytes, str] | None:
    """(bytes of trainLabels.csv, where it was found), or None when there is no label file."""
    inside = source.inner_file(LABEL_FILE)
    if inside is not None:
        return inside
    path = find_label_in(source.label_folders())
    return (label_bytes(path), str(path)) if path is not None else None
