"""How figures are summarised and rounded for the report."""

from __future__ import annotations

import math
import statistics


def sig(x: float, digits: int = 4) -> float:
    """Round to significant digits: small figures (quick runs, hours) never round to zero."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def spread(values: list[float]) -> dict[str, float]:
    """Median with min-max: the median resists one disturbed repetition on a shared machine."""
    return {"median": sig(statistics.median(values)), "min": sig(min(values)), "max": sig(max(values))}
