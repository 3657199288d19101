"""The local executor: shards built in this process (one worker) or on spawn worker processes, the
largest first so workers finish together, with progress ticks batched per worker. A worker that
dies (a decoder's segfault, the OOM killer) costs a retry of its shard; a second death isolates the
input that kills it: each of the shard's inputs becomes a job of its own, the input a worker dies on
is rejected (`decoder-crash`), and the rest of the shard is written as a build that rejected that
input writes it.
`sightx.shard.executors` runs the same tasks on a Dask cluster.
"""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sightx.errors import Rejection
from sightx.pool import single_threaded
from sightx.shard import workers as wk
from sightx.shard.assembly import Assembly, spool_path
from sightx.shard.plan import SampleRef, ShardTask
from sightx.shard.task import BuildOptions, ShardResult, arm_test_fault, build_shard, sample_outcome

_TICK_EVERY_S = 0.25  # a worker reports progress this often, not per image: fewer wake-ups on busy cores
ATTEMPTS = 2  # whole-shard builds a shard gets before its inputs are run one at a time
CRASH = "decoder-crash"


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


def init_worker() -> None:
    """Worker set-up under spawn: no inherited state is relied on."""
    single_threaded()
    arm_test_fault()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers


def _build_in_worker(task: ShardTask, build: BuildOptions) -> ShardResult:
    ticks = _Ticks()
    try:
        return build_shard(task, build, tick=ticks)
    finally:
        ticks.flush()  # before the result, so the bar is complete when the shard is


def _sample_in_worker(ref: SampleRef, split: str, build: BuildOptions) -> tuple[bytes | Rejection, int]:
    return sample_outcome(ref, split, build)


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
    pool = wk.Workers(min(workers, len(todo)), init_worker)
    deaths: Counter[str] = Counter()
    tasks = {t.name: t for t in todo}
    isolated: dict[str, Assembly] = {}
    try:
        for task in longest_first(todo, sizes):
            pool.submit(("shard", task.name), _build_in_worker, task, build)
        for event in pool.events():
            if isinstance(event, wk.Progress):
                tick(*event.payload)
            elif isinstance(event, wk.Failed):
                raise event.error  # a worker's unexpected error (a full disk: OSError) ends the run
            elif isinstance(event, wk.Done) and event.key[0] == "shard":
                finished(event.value)
            elif isinstance(event, wk.Done):
                _, name, i = event.key
                outcome, input_bytes = event.value
                tick(1, int(isinstance(outcome, Rejection)))
                _add_isolated(isolated, name, i, outcome, input_bytes, finished)
            elif event.key[0] == "shard":
                name = event.key[1]
                deaths[name] += 1
                task = tasks[name]
                if deaths[name] < ATTEMPTS:
                    say(f"a worker died ({event.how}) building {name}; building it again")
                    pool.submit(("shard", name), _build_in_worker, task, build)
                    continue
                say(f"a worker died ({event.how}) building {name} again; running each of its {len(task.samples)} inputs on its own")
                out = Path(build.out)
                spool_path(out, name).unlink(missing_ok=True)
                isolated[name] = Assembly(task, out)
                for i, ref in enumerate(task.samples):
                    pool.submit(("sample", name, i), _sample_in_worker, ref, task.split, build)
            else:
                _, name, i = event.key
                ref = tasks[name].samples[i]
                say(f"{ref.source} kills the worker that decodes it ({event.how}): rejected as {CRASH}")
                detail = f"the worker process died ({event.how}) on this input, alone, after its shard died {ATTEMPTS} times"
                tick(1, 1)
                _add_isolated(isolated, name, i, Rejection(CRASH, detail), 0, finished)
    finally:
        pool.close()


def _add_isolated(
    isolated: dict[str, Assembly], name: str, i: int, outcome: bytes | Rejection, input_bytes: int, finished: Callable[[ShardResult], None]
) -> None:
    shard = isolated[name]
    shard.add(i, outcome, input_bytes)
    if shard.complete:
        finished(shard.write())
        del isolated[name]


def say(line: str) -> None:
    print(f"sightx-shard: {line}", file=sys.stderr, flush=True)
