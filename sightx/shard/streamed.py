"""Build shards from a source read in one stream pass (the competition zip, a compressed tar).

Samples arrive in archive order, but a shard's samples are spread over the whole archive (the
plan is stratified and shuffled, identical for every source). So the reader feeds samples, not
shards, to the workers, at most three per worker in flight and as many again read ahead on a
thread, so inflating overlaps the workers' decoding (memory: a few compressed images per worker).
Each finished sample's tar bytes are appended to its shard's spool file beside the output
(shard/assembly.py). When a shard's last sample is back, the spool is copied into the tar in
plan order (the bytes a random-access build writes) and deleted. Spools hold outputs only.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from sightx.errors import Rejection
from sightx.image.preprocess import PreprocessOptions
from sightx.labels.kinds import classes
from sightx.parallel import workers as wk
from sightx.parallel.pool import init_worker, single_threaded
from sightx.parallel.read_ahead import ahead
from sightx.shard.assembly import Assembly
from sightx.shard.local import ATTEMPTS, CRASH, say
from sightx.shard.plan import SampleRef, ShardTask
from sightx.shard.task import BuildOptions, ShardResult, sample_block

_Job = tuple[SampleRef, str, bytes, PreprocessOptions, tuple[tuple[str, float], ...], str]
READ_AHEAD = 3  # samples read from the archive per worker: one being built, one next in line, one ready to send


def _block(job: _Job) -> bytes | Rejection:
    """Worker: one sample's tar bytes, or its rejection as a value (it travels back pickled)."""
    try:
        return sample_block(*job)
    except Rejection as e:
        return e


def execute_streamed(
    todo: list[ShardTask],
    build: BuildOptions,
    workers: int,
    tick: Callable[[int, int], None],
    finished: Callable[[ShardResult], None],
) -> None:
    """Read the wanted members once, in archive order, building every shard in `todo`. A sample
    whose worker dies is sent again once; a second death rejects it (`decoder-crash`)."""
    out = Path(build.out)
    where = {ref.source: (task, i) for task in todo for i, ref in enumerate(task.samples)}
    assemblies = {task.name: Assembly(task, out, classes(build.labels)) for task in todo}

    def deliver(name: str, outcome: bytes | Rejection, input_bytes: int) -> None:
        task, i = where.pop(name)
        shard = assemblies[task.name]
        shard.add(i, outcome, input_bytes)
        tick(1, int(isinstance(outcome, Rejection)))
        if shard.complete:
            finished(shard.write())
            del assemblies[task.name]

    def jobs() -> Iterator[tuple[str, int, _Job | Rejection]]:
        for name, data in build.source.stream(list(where)):
            if isinstance(data, Rejection):
                yield name, 0, data
            else:
                task, i = where[name]
                yield name, len(data), (task.samples[i], task.split, data, build.preprocess, build.min_quality, build.labels)

    with contextlib.closing(ahead(jobs(), READ_AHEAD * max(1, workers))) as read:  # the thread stops with the run
        if workers <= 1:
            single_threaded()
            for name, size, job in read:
                deliver(name, job if isinstance(job, Rejection) else _block(job), size)
        else:
            _on_workers(read, workers, deliver)
    for name in list(where):  # a stream must yield every name asked for; if one did not, it is not there
        deliver(name, Rejection("corrupt-member", "not found in the archive"), 0)


def _on_workers(
    jobs: Iterator[tuple[str, int, _Job | Rejection]], workers: int, deliver: Callable[[str, bytes | Rejection, int], None]
) -> None:
    """The samples on spawn workers, read no faster than they are built (memory: READ_AHEAD
    compressed images per worker in flight, as many again read ahead)."""
    pool = wk.Workers(workers, init_worker, depth=2)
    held: dict[str, tuple[int, _Job]] = {}  # sent to a worker, kept for a resend until its outcome is back
    deaths: Counter[str] = Counter()

    def feed() -> None:
        while pool.load < READ_AHEAD * workers:
            item = next(jobs, None)
            if item is None:
                return
            name, size, job = item
            if isinstance(job, Rejection):
                deliver(name, job, 0)
                continue
            held[name] = (size, job)
            pool.submit((name,), _block, job)

    try:
        feed()
        for event in pool.events():
            if isinstance(event, wk.Failed):
                raise event.error
            if isinstance(event, wk.Progress):
                continue
            name = event.key[0]
            if isinstance(event, wk.Died):
                deaths[name] += 1
                if deaths[name] < ATTEMPTS:
                    say(f"a worker died ({event.how}) on {name}; sending it again")
                    pool.submit((name,), _block, held[name][1])
                    continue
                say(f"{name} kills the worker that decodes it ({event.how}): rejected as {CRASH}")
                outcome: bytes | Rejection = Rejection(CRASH, f"the worker process died ({event.how}) on this input, {ATTEMPTS} times")
            else:
                outcome = event.value
            deliver(name, outcome, held.pop(name)[0])
            feed()
    finally:
        pool.close()
