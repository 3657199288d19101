"""Process pools that behave the same under fork and spawn (macOS), with results in input order."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from multiprocessing.pool import AsyncResult
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


def bounded_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, initializer: Callable[[], None] = single_threaded, per_worker: int = 4
) -> Iterator[R]:
    """fn over items in `workers` spawn processes, results in input order, with at most
    `per_worker` items per worker pending: `items` (a stream read from an archive) is consumed no
    faster than the workers keep up, so memory stays bounded (Pool.imap reads it all ahead)."""
    if workers <= 1:
        single_threaded()
        yield from map(fn, items)
        return
    pool = mp.get_context("spawn").Pool(workers, initializer)
    try:
        pending: deque[AsyncResult[R]] = deque()
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            while pending and (len(pending) >= per_worker * workers or pending[0].ready()):
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
        pool.close()
    finally:
        pool.terminate()
        pool.join()
