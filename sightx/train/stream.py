"""The training input pipeline: shards -> (image, grade, weight, key) batches, never the dataset in RAM.

webdataset stages, in order: per-epoch shard shuffle (same order on every rank), split_by_node,
split_by_worker, tar reading restricted to .jpg/.cls/.json (nothing is unpickled; sightx.contracts.sample
reads and checks them), class resampling on undecoded samples, a sample shuffle buffer, then JPEG
decode (through the pixel limit) and augmentation (sightx.inference.transforms, seeded per seed, epoch, rank and worker).
Workers send uint8 tensors; normalisation happens on the device (a quarter of float32's IPC).

Shards are data from outside: a corrupt sample (or the unreadable rest of a shard) is skipped and
counted in a counter shared by the loader's workers (`take_bad_samples`); the trainer reports the
count per epoch and stops past a limit. Good samples are unaffected: an unbalanced epoch still
yields each of them exactly once. With `min_gradability`, samples whose recorded gradability score
is below it are passed over too, before resampling, and counted apart (`take_ungradable`).
"""

from __future__ import annotations

import contextlib
import math
import random
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset

from sightx.contracts import manifest as mf
from sightx.contracts import sample as smp
from sightx.errors import Rejection
from sightx.image.gradability import score_of
from sightx.inference.transforms import EvalTransform
from sightx.train import balance
from sightx.train.augment import Augment
from sightx.train.locations import ShardLocation


def shard_paths(shard_dir: Path, manifest: dict[str, Any], split: str) -> list[str]:
    """Absolute local paths of a split's finished shards (names checked by `manifest.shard_file`)."""
    return [str(mf.shard_file(shard_dir, s)) for s in mf.shards_of(manifest, split)]


def shard_addresses(location: ShardLocation, manifest: dict[str, Any], split: str) -> list[str]:
    """What `location.open` reads for each of a split's finished shards (names checked by `manifest.shard_name`)."""
    return [location.address(s) for s in mf.shards_of(manifest, split)]


@dataclass(frozen=True)
class StreamConfig:
    """Everything a DataLoader worker needs; plain data so it pickles under spawn."""

    shards: tuple[str, ...]
    image_size: int
    train: bool
    seed: int = 0
    shuffle_buffer: int = 1000
    balance: str = "none"
    counts: tuple[int, ...] = (1, 1, 1, 1, 1)
    decay: float = 0.7
    loss_weights: bool = False
    balance_end: tuple[float, ...] | None = None  # progressive: per-grade weights on the natural mix it ends at
    augment: Augment | None = None  # training augmentation ranges; None: Augment's defaults at image_size
    max_pixels: int = smp.MAX_SAMPLE_PIXELS  # a stored image claiming more is refused undecoded
    classes: int = 5  # .cls values allowed: the manifest's label kind (5 grades, 3 quality classes)
    location: ShardLocation | None = None  # how `shards` (its addresses) are opened; None: they are local paths
    sizes: tuple[int, ...] = ()  # each shard's bytes per its manifest, so a remote one that ends short is told from a whole one
    min_gradability: float | None = None  # skip samples scored below this (sightx.image.gradability); None keeps all


class ShardStream(IterableDataset):
    """One pass over the shards per `iter()`; the epoch is read from shared memory so persistent
    workers see it, and every random choice is seeded from (seed, epoch, rank, worker)."""

    def __init__(self, cfg: StreamConfig, epoch: Any, bad: Any, ungradable: Any) -> None:
        super().__init__()
        self.cfg = cfg
        self.epoch = epoch  # multiprocessing Value('i'), shared with the workers
        self.bad = bad  # multiprocessing Value('i'): corrupt samples skipped, by every worker
        self.ungradable = ungradable  # multiprocessing Value('i'): samples below min_gradability skipped

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int, float, str]]:
        cfg = self.cfg
        epoch = int(self.epoch.value)
        rank, _, worker, _ = wds.utils.pytorch_worker_info()
        seeds = [cfg.seed, epoch, rank, worker]
        shards = list(cfg.shards)
        if cfg.train:
            random.Random(f"{cfg.seed}-{epoch}").shuffle(shards)  # identical on every rank and worker
        stages: list[Any] = [
            wds.SimpleShardList(shards),
            wds.split_by_node,
            wds.split_by_worker,
            self._samples,
        ]
        if cfg.train and cfg.balance in ("sample", "progressive"):
            target = balance.target_distribution(cfg.balance, list(cfg.counts), epoch, cfg.decay, cfg.balance_end)
            ratios = balance.resample_ratios(list(cfg.counts), target)
            rng = np.random.default_rng(seeds + [1])
            stages.append(lambda src: balance.resample(src, ratios, rng))
        if cfg.train and cfg.shuffle_buffer > 1:
            stages.append(wds.shuffle(cfg.shuffle_buffer, initial=min(100, cfg.shuffle_buffer), rng=random.Random(str(seeds))))
        augment = cfg.augment or Augment(cfg.image_size)
        transform: Callable[[np.ndarray], torch.Tensor] = (
            partial(augment, rng=np.random.default_rng(seeds + [2])) if cfg.train else EvalTransform(cfg.image_size)
        )
        for sample in wds.DataPipeline(*stages):
            try:
                image = transform(smp.decode_sample(sample[smp.IMAGE], self.cfg.max_pixels))
            except Rejection:
                _add(self.bad)
                continue
            yield image, sample["__grade__"], sample["__weight__"], sample["__key__"]

    def _samples(self, shards: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Undecoded samples whose grade, image header, metadata and weight are sound (resampling routes by the
        grade, and may repeat or drop a sample: what is refused here is counted exactly once)."""
        location, sizes = self.cfg.location, dict(zip(self.cfg.shards, self.cfg.sizes))
        for shard in shards:
            url = shard["url"]
            try:
                with contextlib.nullcontext(Path(url)) if location is None else location.open(url, sizes.get(url)) as source:
                    for key, parts in smp.read_samples(source):
                        try:
                            checked = self._check(parts)
                        except Rejection:
                            _add(self.bad)
                            continue
                        if checked.pop("__ungradable__"):
                            _add(self.ungradable)
                            continue
                        yield {**parts, **checked, "__key__": key}
            except (OSError, EOFError, tarfile.TarError):  # truncated, not a tar, a member claiming gigabytes, a lost connection
                _add(self.bad)

    def _check(self, parts: dict[str, bytes]) -> dict[str, Any]:
        grade = smp.grade_of(parts, self.cfg.classes)
        if grade is None:
            raise smp.SampleError(f"no .{smp.GRADE} member")
        smp.sample_size(smp.image_of(parts), self.cfg.max_pixels)  # before resampling: a corrupt sample is counted once
        meta = smp.meta_of(parts)  # parsed even when unused: a malformed one marks a corrupt sample
        weight = meta.get("weight", 1.0) if self.cfg.loss_weights else 1.0
        weight = 1.0 if weight is None else weight
        if not isinstance(weight, int | float) or isinstance(weight, bool) or not math.isfinite(weight) or weight < 0:
            raise smp.SampleError(f".{smp.META} weight is {str(weight)[:20]!r}, not a non-negative number")
        score = None if self.cfg.min_gradability is None else score_of(meta)  # None: unscored, kept (see has_gradability)
        ungradable = score is not None and score < self.cfg.min_gradability  # type: ignore[operator]
        return {"__grade__": grade, "__weight__": float(weight), "__ungradable__": ungradable}


def _add(counter: Any) -> None:
    with counter.get_lock():
        counter.value += 1


def _take(counter: Any) -> int:
    with counter.get_lock():
        n, counter.value = counter.value, 0
    return int(n)


def take_bad_samples(loader: DataLoader) -> int:
    """Corrupt samples the loader's workers skipped since the last call (exact once a pass has
    ended: every worker counts before it finishes); the count restarts at 0."""
    return _take(loader.dataset.bad)  # type: ignore[attr-defined]


def take_ungradable(loader: DataLoader) -> int:
    """Samples below `min_gradability` skipped since the last call, as `take_bad_samples` counts."""
    return _take(loader.dataset.ungradable)  # type: ignore[attr-defined]


def has_gradability(location: ShardLocation, address: str) -> bool:
    """Whether a shard's first sample records a gradability score: shards written before the score
    existed have none, and a minimum cannot be applied to them."""
    try:
        with location.open(address) as source:
            for _, parts in smp.read_samples(source):
                return score_of(smp.meta_of(parts)) is not None
    except (OSError, EOFError, tarfile.TarError, Rejection):
        return True  # unreadable: the stream counts it as corrupt; no verdict on the score from it
    return True  # an empty shard holds nothing to skip


def loader_settings(workers: int, pin_memory: bool = False) -> dict[str, Any]:
    """DataLoader settings: spawn workers (as on macOS), kept alive across epochs, four batches ahead each.

    The benchmark's ImageFolder baseline uses these too, so only the dataset differs between them.
    """
    ctx = torch.multiprocessing.get_context("spawn")
    return dict(
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        multiprocessing_context=ctx if workers > 0 else None,
        prefetch_factor=4 if workers > 0 else None,
    )


def make_loader(cfg: StreamConfig, batch_size: int, workers: int, pin_memory: bool = False) -> tuple[DataLoader, Any]:
    """A DataLoader over the stream and the shared epoch counter to set before each pass."""
    ctx = torch.multiprocessing.get_context("spawn")
    epoch = ctx.Value("i", 0)
    loader = DataLoader(
        ShardStream(cfg, epoch, ctx.Value("i", 0), ctx.Value("i", 0)), batch_size=batch_size, **loader_settings(workers, pin_memory)
    )
    return loader, epoch
