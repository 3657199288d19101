"""The local executor: shards built in this process (one worker) or on spawn worker processes, the
largest first so workers finish together, with progress ticks batched per worker. A worker that
dies (a decoder's segfault, the OOM killer) costs a retry of its shard; a second death isolates the
input that kills it: each of the shard's inputs becomes a job of its own, the input a worker dies on
is rejected (`decoder-crash`), and the rest of the shard is written as a build that rejected that
input writes it.
`sightx.shard.executors` runs the same tasks on a Dask cluster.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sightx.errors import Rejection
from sightx.labels.kinds import classes
from sightx.parallel import workers as wk
from sightx.parallel.pool import cap_workers, init_worker, single_threaded
from sightx.shard.assembly import Assembly, spool_path
from sightx.shard.plan import ShardTask
from sightx.shard.task import BuildOptions, ShardResult, build_shard, sample_outcome

_TICK_EVERY_S = 0.25  # a worker reports progress this often, not per image: fewer wake-ups on busy cores
ATTEMPTS = wk.ATTEMPTS  # whole-shard builds a shard gets before its inputs are run one at a time
CRASH = wk.CRASH


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
    """Build the shards, in-process for one worker, else on spawn worker processes; `finished` gets
    each result the moment it is back."""
    if workers <= 1:
        single_threaded()
        for task in todo:
            finished(build_shard(task, build, lambda rejected: tick(1, int(rejected))))
        return
    with _Supervised(min(workers, len(todo)), build, tick, finished) as run:
        for task in longest_first(todo, sizes):
            run.build(task)
        run.wait()


def isolate(
    todo: list[ShardTask], build: BuildOptions, workers: int, tick: Callable[[int, int], None], finished: Callable[[ShardResult], None]
) -> None:
    """Build the shards input by input on spawn workers: each input that kills its worker is
    rejected (`decoder-crash`), the rest written in plan order. For shards a cluster gave up on."""
    with _Supervised(cap_workers(workers, sum(len(t.samples) for t in todo)), build, tick, finished) as run:
        for task in todo:
            run.isolate(task)
        run.wait()


class _Supervised:
    """Shard and input jobs on `wk.Workers`, with what a death leads to: a shard's first death a
    retry, its second the isolation of its inputs, an isolated input's death its rejection."""

    def __init__(
        self, workers: int, build: BuildOptions, tick: Callable[[int, int], None], finished: Callable[[ShardResult], None]
    ) -> None:
        self.pool = wk.Workers(workers, init_worker)
        self.build_opts, self.tick, self.finished = build, tick, finished
        self.tasks: dict[str, ShardTask] = {}
        self.deaths: Counter[str] = Counter()
        self.isolated: dict[str, Assembly] = {}

    def __enter__(self) -> _Supervised:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.close()

    def build(self, task: ShardTask) -> None:
        self.tasks[task.name] = task
        self.pool.submit(("shard", task.name), _build_in_worker, task, self.build_opts)

    def isolate(self, task: ShardTask) -> None:
        self.tasks[task.name] = task
        out = Path(self.build_opts.out)
        spool_path(out, task.name).unlink(missing_ok=True)
        self.isolated[task.name] = Assembly(task, out, classes(self.build_opts.labels))
        for i, ref in enumerate(task.samples):
            self.pool.submit(("sample", task.name, i), sample_outcome, ref, task.split, self.build_opts)

    def wait(self) -> None:
        for event in self.pool.events():
            if isinstance(event, wk.Progress):
                self.tick(*event.payload)
            elif isinstance(event, wk.Failed):
                raise event.error  # a worker's unexpected error (a full disk: OSError) ends the run
            elif isinstance(event, wk.Done) and event.key[0] == "shard":
                self.finished(event.value)
            elif isinstance(event, wk.Done):
                outcome, input_bytes = event.value
                self._add(event.key[1], event.key[2], outcome, input_bytes)
            elif event.key[0] == "shard":
                self._shard_died(self.tasks[event.key[1]], event.how)
            else:
                _, name, i = event.key
                ref = self.tasks[name].samples[i]
                say(f"{ref.source} kills the worker that decodes it ({event.how}): rejected as {CRASH}")
                detail = f"the worker process died ({event.how}) on this input, alone, after its shard died"
                self._add(name, i, Rejection(CRASH, detail), 0)

    def _shard_died(self, task: ShardTask, how: str) -> None:
        self.deaths[task.name] += 1
        if self.deaths[task.name] < ATTEMPTS:
            say(f"a worker died ({how}) building {task.name}; building it again")
            self.build(task)
        else:
            say(f"a worker died ({how}) building {task.name} again; running each of its {len(task.samples)} inputs on its own")
            self.isolate(task)

    def _add(self, name: str, i: int, outcome: bytes | Rejection, input_bytes: int) -> None:
        self.tick(1, int(isinstance(outcome, Rejection)))
        shard = self.isolated[name]
        shard.add(i, outcome, input_bytes)
        if shard.complete:
            self.finished(shard.write())
            del self.isolated[name]


def say(line: str) -> None:
    print(f"sightx-shard: {line}", file=sys.stderr, flush=True)
