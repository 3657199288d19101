"""The gradability section's numbers, the same for raw photos and shard samples: score histogram,
share below the default threshold per class, the least gradable items.

raw.py (scores measured on the preprocessing path) and shards.py (scores stored in each sample's
JSON) feed scored items here, so both reports count, rank and summarise alike; render.py draws them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from sightx.explore.common import pct
from sightx.image.gradability import DEFAULT_THRESHOLD

LEAST_GRADABLE = 12  # photos on the least-gradable contact sheet
SCORE_BINS = 20  # histogram bins over [0, 1]
T = TypeVar("T")


@dataclass(frozen=True)
class Scored:
    """One photo or sample with its score: what the summary lists and the sheet captions."""

    image: str
    label: int | None  # its class (grade or quality class); None for an unlabelled raw photo
    score: float
    components: dict[str, float]


Shown = tuple[Scored, np.ndarray]  # an item on the least-gradable sheet and its picture


@dataclass
class Tally(Generic[T]):
    """Scores counted per class as they stream past, and the `keep` lowest items (ties: first seen first)."""

    classes: int
    keep: int = LEAST_GRADABLE
    scores: list[float] = field(default_factory=list)
    measured: list[int] = field(init=False)
    below: list[int] = field(init=False)
    _heap: list[tuple[float, int, T]] = field(default_factory=list)  # (-score, -order, item): the highest at the top

    def __post_init__(self) -> None:
        self.measured = [0] * self.classes
        self.below = [0] * self.classes

    def add(self, score: float, label: int | None, item: T) -> None:
        self.scores.append(score)
        if label is not None:
            self.measured[label] += 1
            self.below[label] += score < DEFAULT_THRESHOLD
        entry = (-score, -len(self.scores), item)
        if len(self._heap) < self.keep:
            heapq.heappush(self._heap, entry)
        elif entry[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, entry)

    def lowest(self) -> list[T]:
        """The kept items, lowest score first."""
        return [item for _, _, item in sorted(self._heap, key=lambda e: e[:2], reverse=True)]

    def summary(self, least: Iterable[Scored]) -> dict[str, Any]:
        """summary.json's gradability numbers; `least`: the items shown, lowest first."""
        below_all = sum(s < DEFAULT_THRESHOLD for s in self.scores)
        counts, _ = np.histogram(self.scores, bins=SCORE_BINS, range=(0.0, 1.0))
        return {
            "threshold": DEFAULT_THRESHOLD,
            "measured": len(self.scores),
            "below": below_all,
            "below_percent": pct(below_all, len(self.scores)),
            "by_grade": [
                {"grade": c, "measured": self.measured[c], "below": self.below[c], "below_percent": pct(self.below[c], self.measured[c])}
                for c in range(self.classes)
            ],
            "histogram": {"edges": np.linspace(0, 1, SCORE_BINS + 1).round(3).tolist(), "counts": counts.tolist()},
            "least": [{"image": s.image, "grade": s.label, "score": s.score, "components": s.components} for s in least],
        }


def components(record: object) -> dict[str, float]:
    """A gradability record's components as numbers (sample JSON is data: anything else is left out)."""
    found = record.get("components") if isinstance(record, dict) else None
    if not isinstance(found, dict):
        return {}
    return {str(k): float(v) for k, v in found.items() if isinstance(v, int | float) and not isinstance(v, bool)}
