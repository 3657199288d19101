"""The local executor: shards built in this process (a committer thread overlapping each fsync with the
next build) or on a spawn process pool, the largest first so workers finish together, with progress
ticks batched per worker. `sightx.shard.executors` runs the same tasks on a Dask cluster.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sightx.pool import single_threaded
from sightx.shard.plan import ShardTask
from sightx.shard.task import BuildOptions, ShardResult, build_shard

_TICKS: Any = None
_TICK_EVERY_S = 0.25  # a worker reports progress this often, not per image: fewer wake-ups on busy cores


class _Ticks:
    """Per-sample progress from build_shard, sent to the parent's queue in batches."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self.done = self.rejected = 0
        self.last = time.monotonic()

    def __call__(self, rejected: bool) -> None:
        self.done += 1
        self.rejected += rejected
        if time.monotonic() - self.last >= _TICK_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.done:
            self.queue.put((self.done, self.rejected))
        self.done = self.rejected = 0
        self.last = time.monotonic()


def _init_worker(ticks: Any) -> None:
    """Worker set-up under spawn or fork: no inherited state is relied on."""
    global _TICKS
    _TICKS = _Ticks(ticks)
    single_threaded()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool


def _build_in_worker(args: tuple[ShardTask, BuildOptions]) -> ShardResult:
    task, build = args
    try:
        return build_shard(task, build, tick=_TICKS)
    finally:
        _TICKS.flush()  # before the result, so the bar is complete when the shard is


def longest_first(todo: list[ShardTask], sizes: dict[str, int]) -> list[ShardTask]:
    """Shards by input bytes (as listed by the source), largest first: the pool's last shards are
    its shortest, so workers finish together (which shard runs when never changes its bytes)."""
    return sorted(todo, key=lambda task: sum(sizes[ref.source] for ref in task.samples), reverse=True)


def execute_local(todo: list[ShardTask], build: BuildOptions, workers: int, tick: Any, finished: Any, sizes: dict[str, int]) -> None:
    """Build the shards, in-process for one worker, else on a spawn pool with progress ticks."""
    if workers <= 1 or len(todo) <= 1:
        single_threaded()
        # One committer thread: a shard's fsync (the GIL is released) overlaps building the next.
        with ThreadPoolExecutor(1) as committer:
            commit: Future[None] | None = None
            for task in todo:
                result = build_shard(task, build, lambda rejected: tick(1, int(rejected)))
                if commit is not None:
                    commit.result()  # the previous shard's, done by now; re-raises a failed commit (disk full)
                commit = committer.submit(finished, result)
            if commit is not None:
                commit.result()
        return
    ctx = mp.get_context("spawn")
    ticks = ctx.Queue()
    pool = ctx.Pool(min(workers, len(todo)), _init_worker, (ticks,))
    try:
        pending = [pool.apply_async(_build_in_worker, ((t, build),)) for t in longest_first(todo, sizes)]
        while pending:
            try:
                tick(*ticks.get(timeout=0.1))
                continue
            except queue_mod.Empty:
                pass
            for job in [j for j in pending if j.ready()]:
                pending.remove(job)
                finished(job.get())  # re-raises a worker's unexpected error here
        while True:  # ticks still queued after the last result
            try:
                tick(*ticks.get_nowait())
            except queue_mod.Empty:
                break
        pool.close()
    finally:
        pool.terminate()
        pool.join()
