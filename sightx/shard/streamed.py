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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from sightx.errors import Rejection
from sightx.image.preprocess import PreprocessOptions
from sightx.labels.kinds import classes
from sightx.parallel.pool import single_threaded
from sightx.parallel.read_ahead import ahead
from sightx.parallel.supervise import supervised
from sightx.shard.assembly import Assembly
from sightx.shard.plan import SampleRef, ShardTask
from sightx.shard.task import BuildOptions, ShardResult, sample_block

_Job = tuple[SampleRef, str, bytes, PreprocessOptions, tuple[tuple[str, float], ...], str]
_Item = tuple[str, int, _Job]  # a sample to build: its input's name, the input bytes read, the job
READ_AHEAD = 3  # samples read from the archive per worker: one being built, one next in line, one ready to send


def _block(item: _Item) -> bytes | Rejection:
    """Worker: one sample's tar bytes, or its rejection as a value (it travels back pickled)."""
    try:
        return sample_block(*item[2])
    except Rejection as e:
        return e


def execute_streamed(
    todo: list[ShardTask],
    build: BuildOptions,
    workers: int,
    tick: Callable[[int, int], None],
    finished: Callable[[ShardResult], None],
) -> None:
    """Read the wanted members once, in archive order, building every shard in `todo`, in-process
    for one worker, else on spawn workers (sightx.parallel.supervise: a sample whose worker dies is
    sent again once; a second death rejects it, `decoder-crash`)."""
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

    def to_build(read: Iterable[tuple[str, int, _Job | Rejection]]) -> Iterator[_Item]:
        """The samples to build; a member the source could not read is delivered as its rejection
        here, taking no place among the samples in flight."""
        for name, size, job in read:
            if isinstance(job, Rejection):
                deliver(name, job, 0)
            else:
                yield name, size, job

    with contextlib.closing(ahead(jobs(), READ_AHEAD * max(1, workers))) as read:  # the thread stops with the run
        if workers <= 1:
            single_threaded()
            built: Iterator[tuple[_Item, bytes | Rejection]] = ((item, _block(item)) for item in to_build(read))
        else:  # read no faster than they are built (memory: READ_AHEAD compressed images per worker in flight)
            built = supervised(
                _block, to_build(read), workers, lambda item, crash: crash, name=lambda item: item[0], limit=READ_AHEAD * workers
            )
        for (name, size, _), outcome in built:
            deliver(name, outcome, size)
    for name in list(where):  # a stream must yield every name asked for; if one did not, it is not there
        deliver(name, Rejection("corrupt-member", "not found in the archive"), 0)
