"""Build shards from a source read in one stream pass (the competition zip, a compressed tar).

Samples arrive in archive order, but a shard's samples are spread over the whole archive (the
plan is stratified and shuffled, identical for every source). So the reader feeds samples, not
shards, to the workers, at most a few per worker in flight (memory: a few compressed images per
worker), and each finished sample's tar bytes are appended to its shard's spool file beside the
output. When a shard's last sample is back, the spool is copied into the tar in plan order (the
bytes a random-access build writes) and deleted. Spools hold outputs only, never input bytes.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sightx.errors import Rejection
from sightx.label_kinds import classes
from sightx.pool import bounded_map
from sightx.preprocess import PreprocessOptions
from sightx.shard.plan import Reject, SampleRef, ShardTask
from sightx.shard.task import BuildOptions, ShardResult, _TarWriter, add_to_counts, sample_block, temporary

SPOOL_SUFFIX = ".spool"


def spool_path(out: Path, name: str) -> Path:
    return out / (name + SPOOL_SUFFIX)


@dataclass
class _Assembly:
    """A shard being gathered: where each done sample's bytes sit in the spool, or why it was rejected."""

    task: ShardTask
    spooled: dict[int, tuple[int, int]] = field(default_factory=dict)
    rejected: dict[int, Reject] = field(default_factory=dict)
    spool_bytes: int = 0
    input_bytes: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def complete(self) -> bool:
        return len(self.spooled) + len(self.rejected) == len(self.task.samples)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool


_Job = tuple[SampleRef, str, bytes, PreprocessOptions, tuple[tuple[str, float], ...], str]


def _block(item: tuple[str, int, _Job | Rejection]) -> tuple[str, int, bytes | Rejection]:
    """Worker: one sample's tar bytes, or its rejection as a value (it travels back pickled)."""
    name, size, job = item
    if isinstance(job, Rejection):
        return name, size, job
    try:
        return name, size, sample_block(*job)
    except Rejection as e:
        return name, size, e


def execute_streamed(
    todo: list[ShardTask],
    build: BuildOptions,
    workers: int,
    tick: Callable[[int, int], None],
    finished: Callable[[ShardResult], None],
) -> None:
    """Read the wanted members once, in archive order, building every shard in `todo`."""
    out = Path(build.out)
    where = {ref.source: (task, i) for task in todo for i, ref in enumerate(task.samples)}
    assemblies = {task.name: _Assembly(task) for task in todo}

    def deliver(name: str, outcome: bytes | Rejection, input_bytes: int) -> None:
        task, i = where.pop(name)
        shard = assemblies[task.name]
        shard.input_bytes += input_bytes
        if isinstance(outcome, Rejection):
            ref = task.samples[i]
            shard.rejected[i] = Reject(ref.source, ref.image, outcome.reason, outcome.detail)
        else:
            with open(spool_path(out, task.name), "ab") as f:
                f.write(outcome)
            shard.spooled[i] = (shard.spool_bytes, len(outcome))
            shard.spool_bytes += len(outcome)
        tick(1, int(isinstance(outcome, Rejection)))
        if shard.complete:
            finished(_assemble(out, shard, classes(build.labels)))
            del assemblies[task.name]

    def jobs() -> Iterator[tuple[str, int, _Job | Rejection]]:
        for name, data in build.source.stream(list(where)):
            if isinstance(data, Rejection):
                yield name, 0, data
            else:
                task, i = where[name]
                yield name, len(data), (task.samples[i], task.split, data, build.preprocess, build.min_quality, build.labels)

    for name, size, outcome in bounded_map(_block, jobs(), workers, _init_worker):
        deliver(name, outcome, size)
    for name in list(where):  # a stream must yield every name asked for; if one did not, it is not there
        deliver(name, Rejection("corrupt-member", "not found in the archive"), 0)


def _assemble(out: Path, shard: _Assembly, n_classes: int) -> ShardResult:
    """The spooled samples, in plan order, as the shard's temporary tar; the spool is then removed."""
    task = shard.task
    result = ShardResult(task.name, task.split, task.digest, grades=[0] * n_classes, input_bytes=shard.input_bytes)
    spool = spool_path(out, task.name)
    with open(temporary(out / task.name), "wb") as f:
        tar = _TarWriter(f)
        with open(spool, "rb") if shard.spooled else open(os.devnull, "rb") as blocks:
            for i, ref in enumerate(task.samples):
                if i in shard.rejected:
                    result.rejects.append(shard.rejected[i])
                    continue
                offset, size = shard.spooled[i]
                blocks.seek(offset)
                tar.add_block(blocks.read(size))
                add_to_counts(result, ref)
        tar.close()
    spool.unlink(missing_ok=True)
    result.bytes, result.sha256 = tar.size, tar.sha256.hexdigest()
    result.seconds = max(time.perf_counter() - shard.started, 1e-9)
    return result
