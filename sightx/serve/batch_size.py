"""The batch size a model grades fastest at, per photo, on this device: measured when the server starts.

A bigger batch is not always cheaper per photo. On an accelerator it is, up to its memory; on a
CPU a large model at a large input can be slower per photo in a batch than one at a time (its
activations stop fitting in cache), so a fixed `--max-batch 8` would make a busy server slower
than an idle one. The service times batches of 1, 2, 4 ... up to `--max-batch` once at start and
batches up to the size that is fastest per photo (docs/guides/serve.md has the measured figures).
"""

from __future__ import annotations

import time
from collections.abc import Callable

TOLERANCE = 1.10  # within 10% of the fastest per photo counts as fast (timings of small models vary that much); the largest such wins
REPEATS = 2  # timed calls per size, the fastest kept: one call is at the mercy of a busy core
WARM_ALL = 16  # up to this batch size every size is warmed at start; above it, the timed sizes only


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
    """Seconds per photo of `run(size)` for each of `sizes(max_batch)`: the fastest of REPEATS
    calls after an untimed one (the first call at a new shape sets up its kernels). Stops after the
    first size more than TOLERANCE slower per photo than the best so far: on such a device the
    larger ones only get slower."""
    per_photo: dict[int, float] = {}
    for size in sizes(max_batch):
        run(size)
        timings = []
        for _ in range(REPEATS):
            start = clock()
            run(size)
            timings.append(clock() - start)
        per_photo[size] = min(timings) / size
        if per_photo[size] > min(per_photo.values()) * TOLERANCE:
            break
    return per_photo


def warm_sizes(batch: int) -> list[int]:
    """The batch sizes to run once before serving, so memory is flat from the first request (a
    first call at a new shape allocates for it): all up to WARM_ALL, else the doubling ones."""
    return list(range(1, batch + 1)) if batch <= WARM_ALL else sizes(batch)
