"""The one loop for work on spawned workers that may die (a decoder's segfault, the OOM killer).

A job whose worker dies is sent once more, to another worker; a second death gives up on it:
`on_crash(item, crashed(how))` takes the place of its result and the run goes on (multiprocessing.Pool
would wait for a dead worker forever). Shards (whole on the process pool, sample by sample from a
stream, input by input after a shard was given up on), predict and explore all run on it, so the
policy, the `decoder-crash` rejection and the warnings are the same everywhere.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from itertools import islice
from typing import Any, TypeVar

from sightx.errors import Rejection
from sightx.parallel import workers as wk
from sightx.parallel.pool import cap_workers, init_worker, single_threaded

T = TypeVar("T")
R = TypeVar("R")

ATTEMPTS = 2  # runs a job gets before the input it holds is blamed for the deaths
CRASH = "decoder-crash"  # the rejection reason of an input its worker dies on every time


def crashed(how: str) -> Rejection:
    """The rejection of an input its worker died on at every attempt (`how`: the last death, "SIGKILL")."""
    return Rejection(CRASH, f"the worker process died ({how}) on this input, {ATTEMPTS} times")


def say(line: str) -> None:
    """A warning on stderr: a run that goes on after a death says so."""
    print(f"sightx: {line}", file=sys.stderr, flush=True)


def supervised(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    on_crash: Callable[[T, Rejection], R],
    *,
    name: Callable[[T], str],
    limit: int,
    inputs: Callable[[T], Sequence[str]] | None = None,
    depth: int = 2,
    ordered: bool = False,
    on_progress: Callable[[Any], None] | None = None,
) -> Iterator[tuple[T, R]]:
    """(item, fn(item)) for each item, run on `workers` spawn processes each holding up to `depth`
    jobs; as they finish, or in input order when `ordered`. At most `limit` items are taken from
    `items` and not yet given back (memory stays bounded when `items` is a stream).

    `name(item)` names it in warnings; `inputs(item)` (default: its name) are the inputs it reads,
    where the test fault hook looks. A worker's `wk.progress` payloads go to `on_progress`; an
    exception `fn` raises ends the loop here, as Pool's get() would."""
    source = iter(items)
    held: dict[int, T] = {}  # taken, kept for a resend until given back
    back: dict[int, R] = {}  # outcomes waiting for an earlier one (ordered)
    deaths: Counter[int] = Counter()
    sent = given = 0

    def send(i: int) -> None:
        item = held[i]
        pool.submit((i,), fn, item, inputs=tuple(inputs(item) if inputs else (name(item),)))

    def take() -> None:
        nonlocal sent
        for item in islice(source, limit - (sent - given)):
            held[sent] = item
            send(sent)
            sent += 1

    with wk.Workers(workers, init_worker, depth) as pool:
        take()
        for event in pool.events():
            if isinstance(event, wk.Progress):
                if on_progress is not None:
                    on_progress(event.payload)
                continue
            if isinstance(event, wk.Failed):
                raise event.error  # the callers' functions turn per-item failures into values
            (i,) = event.key
            if isinstance(event, wk.Died):
                deaths[i] += 1
                if deaths[i] < ATTEMPTS:
                    say(f"a worker died ({event.how}) on {name(held[i])}; sending it again")
                    send(i)
                    continue
                say(f"a worker died ({event.how}) on {name(held[i])} again: not run again ({CRASH})")
                back[i] = on_crash(held[i], crashed(event.how))
            else:
                back[i] = event.value
            for j in _givable(back, given, i, ordered):
                given += 1
                yield held.pop(j), back.pop(j)
            take()
    assert not held and not back, "every item taken is given back"


def _givable(back: dict[int, Any], given: int, latest: int, ordered: bool) -> list[int]:
    """The outcomes to give now: the one just back, or (ordered) the run of them from `given` on."""
    if not ordered:
        return [latest]
    run: list[int] = []
    while given + len(run) in back:
        run.append(given + len(run))
    return run


def bounded_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    on_crash: Callable[[T, Rejection], R],
    *,
    name: Callable[[T], str],
    per_worker: int = 4,
) -> Iterator[R]:
    """fn over items in input order: in-process for one worker (capped by `cap_workers`), else
    `supervised` with `per_worker` items per worker taken ahead of the one to give next, so a
    stream read from an archive is consumed no faster than the workers keep up. Predict, explore."""
    workers = cap_workers(workers, len(items) if isinstance(items, Sized) else workers)
    if workers <= 1:
        single_threaded()
        yield from map(fn, items)
        return
    for _, value in supervised(fn, items, workers, on_crash, name=name, limit=per_worker * workers, ordered=True):
        yield value
