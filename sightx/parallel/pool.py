"""Worker counts, a worker's set-up, and `ordered_map`: multiprocessing.Pool for our own inputs
(synth, the bench's plain-pool engine), results in input order, the same under fork and spawn.

Inputs from outside (shard, predict, explore) run through sightx.parallel.supervise instead, so a
worker that dies costs one item, not the run."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """All the cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def cap_workers(requested: int, items: int) -> int:
    """No more processes than items or cores: more only cost start-up time and memory (each imports numpy, OpenCV...)."""
    return max(1, min(requested, items, default_workers()))


def single_threaded() -> None:
    """One thread per library per process: the parallelism is the pool's (or, in-process, the caller's)."""
    import cv2

    cv2.setNumThreads(1)


def ordered_map(fn: Callable[[T], R], items: Sequence[T], workers: int, context: str = "spawn") -> Iterator[R]:
    """fn over items in at most `workers` processes (capped by `cap_workers`; in-process when 1),
    yielding results in input order.

    `spawn` by default so Linux runs exercise the same pickling path as macOS.
    """
    workers = cap_workers(workers, len(items))
    if workers <= 1:
        single_threaded()
        yield from map(fn, items)
        return
    with mp.get_context(context).Pool(workers, initializer=single_threaded) as pool:
        yield from pool.imap(fn, items, chunksize=1)


def init_worker() -> None:
    """A worker's set-up under spawn: no inherited state is relied on."""
    single_threaded()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
