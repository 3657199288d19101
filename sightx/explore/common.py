"""What every part of the exploration report shares: options, the error, tile size, small helpers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sightx import codec
from sightx.errors import SightXError

TILE = (240, 160)  # contact-sheet cell (width, height): the 3:2 shape of most fundus photos
EXAMPLES = 20  # names listed per finding; the counts are always complete


class ExploreError(SightXError):
    """Nothing to explore, an input that cannot be trusted, or nowhere to write: one line, no traceback."""


@dataclass(frozen=True)
class ExploreOptions:
    per_grade: int = 2
    seed: int = 0
    sample: int = 2000  # images measured for the properties section; 0 = all
    workers: int = 1
    labels: str | None = None  # label CSV; default: trainLabels.csv beside the images
    raw: str | None = None  # raw folder the shards were made from, for the before/after gallery
    progress: bool = True


def thumbnail(path: Path) -> np.ndarray | None:
    """A decode at the smallest DCT scale that still fills a tile, so even huge photos stay cheap."""
    try:
        return codec.decode(path.read_bytes(), TILE)[0]
    except (OSError, codec.CodecError):
        return None


def pct(part: float, whole: float) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def examples(items: list[str]) -> dict[str, Any]:
    """A complete count with the first few names, so a huge mismatch stays readable."""
    return {"count": len(items), "examples": items[:EXAMPLES]}


def pairs(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in d.items())
