"""A shard gathered one sample at a time, in any order, then written in plan order.

Two paths build shards sample by sample instead of in one `build_shard` call: the streamed reader
(samples arrive in archive order) and the isolation of an input that kills its worker (each input
of the shard on its own). Each finished sample's tar bytes are appended to the shard's spool file
beside the output; when the last one is back, the spool is copied into the tar in plan order, so
the bytes are those `build_shard` writes for the same outcomes. Spools hold outputs only.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from sightx.contracts.rejects import Reject
from sightx.errors import Rejection
from sightx.labels.grades import NUM_GRADES
from sightx.shard.plan import ShardTask
from sightx.shard.task import ShardResult, _TarWriter, add_to_counts, temporary

SPOOL_SUFFIX = ".spool"


def spool_path(out: Path, name: str) -> Path:
    return out / (name + SPOOL_SUFFIX)


@dataclass
class Assembly:
    """A shard being gathered: where each done sample's bytes sit in the spool, or why it was rejected."""

    task: ShardTask
    out: Path
    classes: int = NUM_GRADES  # the label kind's class count (sightx.labels.kinds.classes)
    spooled: dict[int, tuple[int, int]] = field(default_factory=dict)
    rejected: dict[int, Reject] = field(default_factory=dict)
    spool_bytes: int = 0
    input_bytes: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def complete(self) -> bool:
        return len(self.spooled) + len(self.rejected) == len(self.task.samples)

    def add(self, i: int, outcome: bytes | Rejection, input_bytes: int) -> None:
        """Sample i's tar bytes (spooled) or its rejection."""
        self.input_bytes += input_bytes
        if isinstance(outcome, Rejection):
            ref = self.task.samples[i]
            self.rejected[i] = Reject(ref.source, ref.image, outcome.reason, outcome.detail)
            return
        with open(spool_path(self.out, self.task.name), "ab") as f:
            f.write(outcome)
        self.spooled[i] = (self.spool_bytes, len(outcome))
        self.spool_bytes += len(outcome)

    def write(self) -> ShardResult:
        """The spooled samples, in plan order, as the shard's temporary tar; the spool is then removed."""
        task = self.task
        result = ShardResult(task.name, task.split, task.digest, grades=[0] * self.classes, input_bytes=self.input_bytes)
        spool = spool_path(self.out, task.name)
        with open(temporary(self.out / task.name), "wb") as f:
            tar = _TarWriter(f)
            with open(spool, "rb") if self.spooled else open(os.devnull, "rb") as blocks:
                for i, ref in enumerate(task.samples):
                    if i in self.rejected:
                        result.rejects.append(self.rejected[i])
                        continue
                    offset, size = self.spooled[i]
                    blocks.seek(offset)
                    tar.add_block(blocks.read(size))
                    add_to_counts(result, ref)
            tar.close()
        spool.unlink(missing_ok=True)
        result.bytes, result.sha256 = tar.size, tar.sha256.hexdigest()
        result.seconds = max(time.perf_counter() - self.started, 1e-9)
        return result
