"""What every part of the exploration report shares: options, the error, tile size, small helpers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sightx.errors import Rejection, SightXError
from sightx.image import codec, formats
from sightx.image.preprocess import PreprocessOptions
from sightx.labels.kinds import GRADE, NAMES

TILE = (240, 160)  # contact-sheet cell (width, height): the 3:2 shape of most fundus photos
EXAMPLES = 20  # names listed per finding; the counts are always complete
# PNG/TIFF thumbnails: Pillow's decode with the shards' pixel limit, but no minimum side, so a
# photo too small to shard is still shown (the worst-photos sheet exists to show such photos).
_PILLOW_THUMB = PreprocessOptions(size=256, normalize="none", min_side=1)


class ExploreError(SightXError):
    """Nothing to explore, an input that cannot be trusted, or nowhere to write: one line, no traceback."""


@dataclass(frozen=True)
class ExploreOptions:
    per_grade: int = 2
    seed: int = 0
    sample: int = 2000  # images measured for the properties section; 0 = all
    workers: int = 1
    labels: str | None = None  # label CSV; default: trainLabels.csv beside the images
    raw: str | None = None  # raw folder or archive the shards were made from, for the before/after gallery
    progress: bool = True


def thumbnail(path: Path) -> np.ndarray | None:
    """The thumbnail of a file (see thumb); None when it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return thumb(data, path.name)


def thumb(data: bytes | None, name: str) -> np.ndarray | None:
    """A photo's pixels for a contact sheet, or None (no bytes, or not decodable).

    A JPEG decodes at the smallest DCT scale that still fills a tile, so even huge photos stay
    cheap; `.png`/`.tif(f)` go through sightx.image.photos (Pillow), routed by name as the shards route them.
    """
    if data is None:
        return None
    try:
        if formats.decodes_with_pillow(name):
            from sightx.image.photos import decode_photo  # Pillow's decoder: loaded only for a PNG/TIFF input

            return decode_photo(data, _PILLOW_THUMB).image
        return codec.decode(data, TILE)[0]
    except Rejection:  # CodecError and the Pillow path's rejections alike
        return None


def pct(part: float, whole: float) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def examples(items: list[str]) -> dict[str, Any]:
    """A complete count with the first few names, so a huge mismatch stays readable."""
    return {"count": len(items), "examples": items[:EXAMPLES]}


def pairs(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in d.items())


def class_label(kind: str, c: int | None) -> str:
    """How the report names class `c` of a label kind: "grade 3" (the ICDR number graders use), or a
    quality class's name ("Reject"); "unlabelled" for None."""
    if c is None:
        return "unlabelled"
    return f"grade {c}" if kind == GRADE else NAMES[kind][c]


def class_labels(kind: str) -> list[str]:
    """Every class of a label kind as class_label names it: the column headers of per-class tables."""
    return [class_label(kind, c) for c in range(len(NAMES[kind]))]
