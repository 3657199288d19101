"""The batch size a model grades fastest at, per photo, on this device: measured when the server starts.

A bigger batch is not always cheaper per photo. On an accelerator it is, up to its memory; on a
CPU a large model at a large input can be slower per photo in a batch than one at a time (its
activations stop fitting in cache), so a fixed `--max-batch 8` would make a busy server slower
than an idle one. The service times batches of 1, 2, 4 ... up to `--max-batch` once at start and
batches up to the size that is fastest per photo (README, serving, has the measured figures).
"""

from __future__ import annotations

import time
from collections.abc import Callable

TOLERANCE = 1.05  # a size within 5% of the fastest per photo counts as fast: under load, the largest such wins


def sizes(max_batch: int) -> list[int]:
    """1, 2, 4, ... and `max_batch` itself."""
    out = [1]
    while out[-1] * 2 < max_batch:
        out.append(out[-1] * 2)
    return out + ([max_batch] if max_batch > 1 else [])


def choose(per_photo_s: dict[int, float]) -> int:
    """The largest measured size within TOLERANCE of the fastest per photo."""
    best = min(per_photo_s.values())
    return max(size for size, s in per_photo_s.items() if s <= best * TOLERANCE)


def measure(run: Callable[[int], object], max_batch: int, clock: Callable[[], float] = time.perf_counter) -> dict[int, float]:
    """Seconds per photo of `run(size)` for each of `sizes(max_batch)`, each timed on its second
    call (the first at a new shape sets up its kernels); stops after the first size that is slower
    per photo than the best so far, as the larger ones only get slower on such a device."""
    per_photo: dict[int, float] = {}
    for size in sizes(max_batch):
        run(size)
        start = clock()
        run(size)
        per_photo[size] = (clock() - start) / size
        if per_photo[size] > min(per_photo.values()) * TOLERANCE:
            break
    return per_photo
