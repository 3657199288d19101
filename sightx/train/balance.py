"""Class balancing from the manifest's counts: loss weights, or resampling in the stream.

Resampling decides how many copies of a sample to emit from its grade alone, before its JPEG
is decoded, so dropping a grade-0 sample costs nothing. Ratios keep the expected epoch length
equal to the natural one, so an epoch means the same amount of compute in every mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from sightx.train.config import BALANCE_MODES


def target_distribution(mode: str, counts: list[int], epoch: int, decay: float, end: tuple[float, ...] | None = None) -> np.ndarray:
    """The grade distribution an epoch should show the model.

    `sample`: uniform over the grades present. `progressive`: starts uniform and moves towards the
    end point by `decay` per epoch (weight on uniform = decay**epoch), as the 2nd-place Kaggle team
    did. The end point is the natural distribution, or with `end` per-grade weights on it (o_O's
    grade 0 weight 1, others 2: (1, 2, 2, 2, 2)). `loss`/`none`: the natural distribution.
    """
    n = np.asarray(counts, np.float64)
    natural = n / n.sum()
    if end is not None and mode == "progressive":
        weighted = natural * np.asarray(end, np.float64)
        natural = weighted / weighted.sum()
    uniform = (n > 0) / (n > 0).sum()
    if mode == "sample":
        return uniform
    if mode == "progressive":
        alpha = decay**epoch
        return alpha * uniform + (1 - alpha) * natural
    if mode in ("loss", "none"):
        return natural
    raise ValueError(f"unknown balance mode {mode!r}; choose from {BALANCE_MODES}")


def resample_ratios(counts: list[int], target: np.ndarray) -> np.ndarray:
    """Expected copies per sample of each grade: target share / natural share (0 for absent grades)."""
    n = np.asarray(counts, np.float64)
    natural = n / n.sum()
    out = np.zeros_like(n)
    present = n > 0
    out[present] = target[present] / natural[present]
    return out


def copies(rng: np.random.Generator, ratio: float) -> int:
    """floor(ratio) copies plus one more with probability frac(ratio): unbiased and low-variance."""
    whole = int(ratio)
    return whole + int(rng.random() < ratio - whole)


def resample(samples: Iterable[dict[str, Any]], ratios: np.ndarray, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
    """Stream stage: repeat or drop raw (undecoded) samples by their grade's ratio."""
    for sample in samples:
        for _ in range(copies(rng, float(ratios[int(sample["cls"])]))):
            yield sample
