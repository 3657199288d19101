"""Build one shard: read, preprocess and write each planned sample; reject what cannot be used.

Runs in a worker process, reading from a random-access source (a streamed one is assembled by
shard/streamed.py from the same per-sample bytes, `sample_block`). Memory is one image at a time,
or three with read-ahead (one being built, one queued, one being read); the tar streams to
`*.tar.tmp`, which the parent fsyncs and renames (commit_shard), so a crash never leaves a partial
shard under its final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sightx.contracts import sample
from sightx.contracts.rejects import Reject
from sightx.errors import Rejection, describe
from sightx.image.gradability import score_of
from sightx.image.photos import preprocess_input
from sightx.image.preprocess import PreprocessOptions, Rejected
from sightx.labels.grades import NUM_GRADES
from sightx.labels.kinds import GRADE, classes
from sightx.parallel.read_ahead import ahead
from sightx.shard.plan import SampleRef, ShardTask
from sightx.sources import Source

FIELD_MEASURES = ("brightness", "contrast", "sharpness", "fov_fraction")
# What `--gate` / `--min-quality` can set a minimum for: the metrics, and the gradability score.
GATES = (*FIELD_MEASURES, "gradability")


@dataclass(frozen=True)
class BuildOptions:
    """What a worker needs besides the task; picklable (the source pickles as its description)."""

    source: Source
    out: str
    preprocess: PreprocessOptions
    min_quality: tuple[tuple[str, float], ...] = ()
    labels: str = GRADE  # what the planned classes are (sightx.labels.kinds)
    read_ahead: bool = False  # read the next input on a thread: worth it only with a core to spare


@dataclass
class ShardResult:
    name: str
    split: str
    digest: str
    count: int = 0
    grades: list[int] = field(default_factory=lambda: [0] * NUM_GRADES)
    bytes: int = 0
    sha256: str = ""
    input_bytes: int = 0
    rejects: list[Reject] = field(default_factory=list)
    seconds: float = 0.0


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _TarWriter:
    """Streams a tar to `f` and hashes it on the way, so a shard is never read back.

    A sample's members go out in one write and one hash update (tarfile.addfile makes three of
    each per member, plus a copy of the header object and a copy loop). Headers are tarfile's
    own (GNU format, fixed metadata) and the end of the archive is written as tarfile closes
    one, so the bytes are those `tarfile.open(mode="w", format=GNU_FORMAT)` would write.
    """

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.sha256 = hashlib.sha256()
        self.size = 0

    def add_block(self, block: bytes) -> None:
        """A sample's members as `tar_block` made them."""
        self._write(block)

    def close(self) -> None:
        end = tarfile.NUL * (2 * tarfile.BLOCKSIZE)
        self._write(end + tarfile.NUL * (-(self.size + len(end)) % tarfile.RECORDSIZE))

    def _write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)
        self.f.write(data)


def tar_block(members: list[tuple[str, bytes]]) -> bytes:
    """The tar bytes of one sample's members: headers, data, padding."""
    parts: list[bytes] = []
    for name, data in members:
        parts += (_header(name, len(data)), data, tarfile.NUL * (-len(data) % tarfile.BLOCKSIZE))
    return b"".join(parts)


def _header(name: str, size: int) -> bytes:
    """A tar header with fixed metadata, so the bytes depend on content alone."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def gate_reject(info: dict[str, Any], rules: tuple[tuple[str, float], ...]) -> Rejected | None:
    """The rejection for a sample below any (gate, minimum) rule: `ungradable` when the gradability
    score fails, else `low-quality`; the detail names every rule that failed."""
    failed, ungradable = [], False
    for name, minimum in rules:
        value = score_of(info) if name == "gradability" else info[name]
        if value is not None and value < minimum:
            failed.append(f"{name}={value:g} < {minimum:g}")
            ungradable |= name == "gradability"
    if not failed:
        return None
    return Rejected("ungradable" if ungradable else "low-quality", ", ".join(failed))


def build_shard(task: ShardTask, opts: BuildOptions, tick: Callable[[bool], None] | None = None) -> ShardResult:
    """Write `task` as a WebDataset tar under its temporary name; returns counts, hash and rejections.

    `commit_shard` then makes it durable and final, off the worker: building the next shard
    does not wait for the disk. `tick(rejected)` is called after each sample for progress.
    """
    start = time.perf_counter()
    result = ShardResult(task.name, task.split, task.digest, grades=[0] * classes(opts.labels))
    with (
        open(temporary(Path(opts.out) / task.name), "wb") as f,
        contextlib.closing(inputs(opts.source, task.samples, opts.read_ahead)) as samples,
    ):
        out = _TarWriter(f)
        for ref, data in samples:
            rejected = _add_sample(out, ref, task.split, data, opts, result)
            if tick:
                tick(rejected)
        out.close()
    result.bytes = out.size
    result.sha256 = out.sha256.hexdigest()
    result.seconds = time.perf_counter() - start
    return result


def commit_shard(out: Path, name: str) -> None:
    """fsync a built shard and rename it to its final name, so a crash never leaves a partial
    shard under that name. (The manifest's atomic write then fsyncs the folder.)"""
    tmp = temporary(out / name)
    fd = os.open(tmp, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, out / name)


def temporary(final: Path) -> Path:
    return final.with_name(final.name + ".tmp")


def inputs(source: Source, refs: Sequence[SampleRef], read_ahead: bool) -> Generator[tuple[SampleRef, bytes | Rejection], None, None]:
    """Each planned input's bytes (or why they cannot be read). With `read_ahead` the next one is
    read on a thread while this one is built: inflating a zip member (libdeflate releases the GIL)
    then overlaps decoding the one before, on a core no worker uses; with every core decoding it
    only adds hand-overs. Only that thread touches the source."""
    read = ((ref, _read(source, ref)) for ref in refs)
    return ahead(read, depth=1) if read_ahead else read


def _read(source: Source, ref: SampleRef) -> bytes | Rejection:
    try:
        return source.read(ref.source)
    except Rejection as e:
        return e


def _add_sample(tar: _TarWriter, ref: SampleRef, split: str, data: bytes | Rejection, opts: BuildOptions, result: ShardResult) -> bool:
    """Append one sample, or record why not. Returns True when rejected."""
    outcome, input_bytes = outcome_of(ref, split, data, opts)
    result.input_bytes += input_bytes
    if isinstance(outcome, Rejection):
        result.rejects.append(Reject(ref.source, ref.image, outcome.reason, outcome.detail))
        return True
    tar.add_block(outcome)
    add_to_counts(result, ref)
    return False


def sample_outcome(ref: SampleRef, split: str, opts: BuildOptions) -> tuple[bytes | Rejection, int]:
    """One planned input read from the source: its sample's tar bytes or its rejection, and the
    input bytes read. The one per-sample path of a whole-shard build and of an isolated input."""
    return outcome_of(ref, split, _read(opts.source, ref), opts)


def outcome_of(ref: SampleRef, split: str, data: bytes | Rejection, opts: BuildOptions) -> tuple[bytes | Rejection, int]:
    """`sample_outcome` from bytes already read."""
    if isinstance(data, Rejection):
        return data, 0
    try:
        return sample_block(ref, split, data, opts.preprocess, opts.min_quality, opts.labels), len(data)
    except Rejection as e:
        return e, len(data)


def add_to_counts(result: ShardResult, ref: SampleRef) -> None:
    result.count += 1
    if ref.grade is not None:
        result.grades[ref.grade] += 1


def sample_block(
    ref: SampleRef, split: str, data: bytes, pre: PreprocessOptions, min_quality: tuple[tuple[str, float], ...], labels: str = GRADE
) -> bytes:
    """One input's bytes -> its sample's tar bytes (.jpg, .cls, .json), or raise Rejection."""
    try:
        processed = preprocess_input(data, ref.source, pre)
        rejected = gate_reject(processed.info, min_quality)
        if rejected:
            raise rejected
    except Rejection:
        raise
    except Exception as e:  # a decoder or maths failure on one odd file must not stop the run
        raise Rejection("error", describe(e)) from None
    identity = {**asdict(ref), "split": split}
    return tar_block(sample.members(ref.key, processed.jpeg, ref.grade, sample.metadata(identity, processed.info, labels)))
