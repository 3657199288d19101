"""The local executor: shards built in this process (one worker) or on spawn worker processes, the
largest first so workers finish together, with progress ticks batched per worker. Both run on the
one supervision loop (sightx.parallel.supervise): a worker that dies (a decoder's segfault, the OOM
killer) costs a retry of its shard; a shard given up on (a second death) is built at the end input
by input (`isolate`), where the input a worker dies on is rejected (`decoder-crash`) and the rest
of the shard is written as a build that rejected that input writes it.
`sightx.shard.executors` runs the same tasks on a Dask cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sightx.errors import Rejection
from sightx.labels.kinds import classes
from sightx.parallel import workers as wk
from sightx.parallel.pool import cap_workers, single_threaded
from sightx.parallel.supervise import say, supervised
from sightx.shard.assembly import Assembly, spool_path
from sightx.shard.plan import SampleRef, ShardTask
from sightx.shard.task import BuildOptions, ShardResult, build_shard, sample_outcome

_TICK_EVERY_S = 0.25  # a worker reports progress this often, not per image: fewer wake-ups on busy cores
_Input = tuple[str, int, SampleRef, str]  # an isolated input: its shard's name, its place there, itself, the split


class _Ticks:
    """Per-sample progress from build_shard, sent to the parent in batches."""

    def __init__(self) -> None:
        self.done = self.rejected = 0
        self.last = time.monotonic()

    def __call__(self, rejected: bool) -> None:
        self.done += 1
        self.rejected += rejected
        if time.monotonic() - self.last >= _TICK_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.done:
            wk.progress((self.done, self.rejected))
        self.done = self.rejected = 0
        self.last = time.monotonic()


def sources(task: ShardTask) -> tuple[str, ...]:
    """The inputs a shard job reads (where the test fault hook looks)."""
    return tuple(ref.source for ref in task.samples)


def _build_in_worker(task: ShardTask, build: BuildOptions) -> ShardResult:
    ticks = _Ticks()
    try:
        return build_shard(task, build, tick=ticks)
    finally:
        ticks.flush()  # before the result, so the bar is complete when the shard is


def longest_first(todo: list[ShardTask], sizes: dict[str, int]) -> list[ShardTask]:
    """Shards by input bytes (as listed by the source), largest first: the pool's last shards are
    its shortest, so workers finish together (which shard runs when never changes its bytes)."""
    return sorted(todo, key=lambda task: sum(sizes[ref.source] for ref in task.samples), reverse=True)


def execute_local(
    todo: list[ShardTask],
    build: BuildOptions,
    workers: int,
    tick: Callable[[int, int], None],
    finished: Callable[[ShardResult], None],
    sizes: dict[str, int],
) -> None:
    """Build the shards, in-process for one worker, else on spawn worker processes (one shard each
    at a time); `finished` gets each result the moment it is back."""
    if workers <= 1:
        single_threaded()
        for task in todo:
            finished(build_shard(task, build, lambda rejected: tick(1, int(rejected))))
        return
    gave_up: list[ShardTask] = []

    def give_up(task: ShardTask, crash: Rejection) -> ShardResult | None:
        say(f"each of the {len(task.samples)} inputs of {task.name} is built on its own at the end")
        gave_up.append(task)
        return None

    built = supervised(
        partial(_build_in_worker, build=build),
        longest_first(todo, sizes),
        min(workers, len(todo)),
        give_up,
        name=lambda task: task.name,
        inputs=sources,
        limit=len(todo),
        depth=1,  # a shard is long: one queued behind another would wait while a worker is idle
        on_progress=lambda counts: tick(*counts),
    )
    for _, result in built:
        if result is not None:
            finished(result)
    if gave_up:
        isolate(gave_up, build, workers, tick, finished)


def isolate(
    todo: list[ShardTask], build: BuildOptions, workers: int, tick: Callable[[int, int], None], finished: Callable[[ShardResult], None]
) -> None:
    """Build the shards input by input on spawn workers (one input each, so a death names it): an
    input its worker dies on twice is rejected (`decoder-crash`), the rest written in plan order.
    For shards the process pool or a Dask cluster gave up on."""
    out = Path(build.out)
    shards: dict[str, Assembly] = {}
    for task in todo:
        spool_path(out, task.name).unlink(missing_ok=True)
        shards[task.name] = Assembly(task, out, classes(build.labels))
    items: list[_Input] = [(task.name, i, ref, task.split) for task in todo for i, ref in enumerate(task.samples)]
    outcomes = supervised(
        partial(_isolated_outcome, build=build),
        items,
        cap_workers(workers, len(items)),
        lambda item, crash: (crash, 0),
        name=lambda item: item[2].source,
        limit=len(items),
        depth=1,
    )
    for (name, i, _, _), (outcome, input_bytes) in outcomes:
        tick(1, int(isinstance(outcome, Rejection)))
        shard = shards[name]
        shard.add(i, outcome, input_bytes)
        if shard.complete:
            finished(shard.write())
            del shards[name]


def _isolated_outcome(item: _Input, build: BuildOptions) -> tuple[bytes | Rejection, int]:
    """Worker: one input of a shard given up on, its sample's bytes or rejection (and its input bytes)."""
    _, _, ref, split = item
    return sample_outcome(ref, split, build)
