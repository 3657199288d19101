"""Process pools that behave the same under fork and spawn (macOS), with results in input order.

`bounded_map` (predict, explore: inputs from outside) runs on sightx.parallel.workers, so a worker that dies
costs one item, not the run; `ordered_map` (synth, the bench's plain-pool engine: our own inputs)
is multiprocessing.Pool."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from typing import TypeVar

from sightx.errors import Rejection
from sightx.parallel import faults as fault_injection
from sightx.parallel import workers as wk

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
    fault_injection.arm()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers


def bounded_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    on_crash: Callable[[T, Rejection], R],
    initializer: Callable[[], None] = init_worker,
    per_worker: int = 4,
) -> Iterator[R]:
    """fn over items in `workers` spawn processes (capped by `cap_workers`; in-process when 1),
    results in input order, with at most `per_worker` items per worker pending: `items` (a stream
    read from an archive) is consumed no faster than the workers keep up, so memory stays bounded.

    A worker that dies (a decoder's segfault, the OOM killer) costs its item a run on another
    worker; an item its worker dies on twice gives `on_crash(item, Rejection(decoder-crash))`
    in its place, and the map goes on (multiprocessing.Pool waits for a dead worker forever)."""
    workers = cap_workers(workers, len(items) if isinstance(items, Sized) else workers)
    if workers <= 1:
        single_threaded()
        yield from map(fn, items)
        return
    pool = wk.Workers(workers, initializer, depth=2)  # one running, one next in line: no idle gap
    try:
        yield from _supervised(pool, fn, iter(items), per_worker * workers, on_crash)
    finally:
        pool.close()


def _supervised(
    pool: wk.Workers, fn: Callable[[T], R], items: Iterator[T], limit: int, on_crash: Callable[[T, Rejection], R]
) -> Iterator[R]:
    """bounded_map's loop: feed up to `limit` items ahead of the one to give next, give outcomes in
    order, send an item again after its worker's first death."""
    held: dict[int, T] = {}  # sent to the workers, kept for a resend until its outcome is back
    back: dict[int, R] = {}  # outcomes waiting for an earlier one
    deaths: Counter[int] = Counter()
    sent = given = 0

    def feed() -> None:
        nonlocal sent
        while sent - given < limit:
            try:
                item = next(items)
            except StopIteration:
                return
            held[sent] = item
            pool.submit((sent,), fn, item)
            sent += 1

    feed()
    for event in pool.events():
        if isinstance(event, wk.Progress):
            continue
        if isinstance(event, wk.Failed):
            raise event.error  # as Pool's get() would: the callers' workers turn per-item failures into values
        (i,) = event.key
        if isinstance(event, wk.Died):
            deaths[i] += 1
            if deaths[i] < wk.ATTEMPTS:
                say(f"a worker died ({event.how}); its input is run again on another")
                pool.submit(event.key, fn, held[i])
                continue
            say(f"an input killed its worker {wk.ATTEMPTS} times ({event.how}): recorded as {wk.CRASH}")
            back[i] = on_crash(
                held.pop(i), Rejection(wk.CRASH, f"the worker process died ({event.how}) on this input, {wk.ATTEMPTS} times")
            )
        else:
            del held[i]
            back[i] = event.value
        while given in back:
            given += 1
            yield back.pop(given - 1)
        feed()
    assert not held and not back, "every item sent is given back"


def say(line: str) -> None:
    print(f"sightx: {line}", file=sys.stderr, flush=True)
