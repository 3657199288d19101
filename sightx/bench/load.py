"""Load stage: images/s the training stream delivers against torchvision ImageFolder.

Both read the same preprocessed JPEGs (SightX shards vs the same bytes as loose files), apply
the same augmentation (sightx.inference.transforms), balance classes (stream resampling vs WeightedRandomSampler) and
use the same DataLoader settings: spawn workers, kept alive, prefetch 4. The first epoch starts
the workers and is not timed.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sightx.bench.inputs import Inputs
from sightx.bench.isolate import isolated
from sightx.bench.options import BenchError, BenchOptions
from sightx.bench.stats import sig, spread
from sightx.bench.tars import TarOut
from sightx.contracts import sample
from sightx.labels.grades import NUM_GRADES

PIPELINES = ("sightx", "imagefolder")
LABELS = {"sightx": "SightX stream (shards)", "imagefolder": "ImageFolder + WeightedRandomSampler"}


@dataclass(frozen=True)
class LoadData:
    """The load stage's samples: shards and an ImageFolder tree holding the same bytes."""

    shards: tuple[str, ...]
    folder: str
    counts: tuple[int, ...]  # samples per grade, for the stream's resampling
    distinct: int  # preprocessed images the samples cycle through


@dataclass(frozen=True)
class LoadRun:
    pipeline: str
    data: LoadData
    image_size: int
    batch_size: int
    workers: int
    reps: int
    warmup: bool


def measure(run: LoadRun) -> dict[str, Any]:
    """Untimed first epoch (worker start-up), then `reps` timed epochs; in its own process."""
    loader, epoch = _sightx_loader(run) if run.pipeline == "sightx" else _imagefolder_loader(run)
    if run.warmup:
        _epoch(loader, epoch, 0)
    rates, images = [], 0
    for rep in range(1, run.reps + 1):
        images, seconds = _epoch(loader, epoch, rep)
        rates.append(images / seconds)
    del loader  # shuts the persistent workers down, so their peak RSS is counted
    gc.collect()
    return {"rates": rates, "images_per_epoch": images}


def _epoch(loader: Any, epoch: Any, number: int) -> tuple[int, float]:
    if epoch is not None:
        epoch.value = number
    start = time.perf_counter()
    images = sum(len(batch[0]) for batch in loader)
    return images, time.perf_counter() - start


def _sightx_loader(run: LoadRun) -> tuple[Any, Any]:
    from sightx.train.stream import StreamConfig, make_loader

    cfg = StreamConfig(run.data.shards, run.image_size, train=True, balance="sample", counts=run.data.counts)
    return make_loader(cfg, run.batch_size, run.workers)


class _PilAugment:
    """SightX's training augmentation on a PIL image, for the baseline; each worker process
    draws from its own generator (made after unpickling in the worker)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rng: Any = None

    def __call__(self, pil: Any) -> Any:
        import numpy as np

        from sightx.train.augment import Augment

        if self.rng is None:
            self.rng = np.random.default_rng()
        return Augment(self.size)(np.asarray(pil.convert("RGB")), self.rng)


def _imagefolder_loader(run: LoadRun) -> tuple[Any, None]:
    """The common baseline: PIL loader, the same augmentation, inverse-frequency sampling."""
    import torch
    from torch.utils.data import DataLoader, WeightedRandomSampler
    from torchvision.datasets import ImageFolder

    from sightx.train.stream import loader_settings

    dataset = ImageFolder(run.data.folder, transform=_PilAugment(run.image_size))
    per_class = [dataset.targets.count(c) for c in range(len(dataset.classes))]
    weights = [1.0 / per_class[t] for t in dataset.targets]
    sampler = WeightedRandomSampler(weights, len(dataset), generator=torch.Generator().manual_seed(0))
    return DataLoader(dataset, sampler=sampler, batch_size=run.batch_size, **loader_settings(run.workers)), None


def prepare(opts: BenchOptions, inputs: Inputs, work: Path) -> LoadData:
    """SightX-preprocessed images of the bench inputs, cycled to --load-samples, written both as
    shards (four per loader worker) and as an ImageFolder tree of the same bytes."""
    from sightx.image.preprocess import PreprocessOptions
    from sightx.shard import ShardOptions, run

    src = work / "load-source"
    pre = PreprocessOptions(size=opts.size, quality=opts.quality)
    run(
        Path(inputs.full.train), src, ShardOptions(preprocess=pre, unlabeled=not inputs.full.labelled, workers=opts.workers, progress=False)
    )
    samples = _read_samples(src)
    if not samples:
        raise BenchError("the engine wrote no images to load")
    shards_dir, folder = work / "load-shards", work / "load-folder"
    shards_dir.mkdir()
    counts = [0] * NUM_GRADES
    with TarOut(shards_dir, math.ceil(opts.load_samples / (4 * opts.workers)), prefix="train-") as tars:
        for i in range(opts.load_samples):
            jpeg, grade = samples[i % len(samples)]
            counts[grade] += 1
            key = f"s{i:06d}"
            tars.add(sample.members(key, jpeg, grade, {}))
            (folder / str(grade)).mkdir(parents=True, exist_ok=True)
            (folder / str(grade) / f"{key}.jpg").write_bytes(jpeg)
    return LoadData(tuple(str(p) for p in sorted(shards_dir.glob("*.tar"))), str(folder), tuple(counts), len(samples))


def _read_samples(shards: Path) -> list[tuple[bytes, int]]:
    """(jpeg, grade) of every sample the engine wrote; grade 0 where unlabelled."""
    return [
        (sample.image_of(parts), sample.grade_of(parts) or 0)
        for path in sorted(shards.glob("*.tar"))
        for _, parts in sample.read_samples(path)
    ]


def stage(opts: BenchOptions, inputs: Inputs, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Both pipelines at --workers DataLoader workers, each in a fresh process."""
    data = prepare(opts, inputs, work)
    pipelines: dict[str, Any] = {}
    for name in PIPELINES:
        run = LoadRun(name, data, opts.image_size, opts.batch_size, opts.workers, opts.reps, opts.warmup)
        try:
            raw = isolated(measure, run)
        except BenchError as e:
            pipelines[name] = {"label": LABELS[name], "error": str(e)}
            log(f"load   {LABELS[name]}: failed: {e}")
            continue
        pipelines[name] = {
            "label": LABELS[name],
            "images_per_s": spread(raw["rates"]),
            "images_per_epoch": raw["images_per_epoch"],
            "peak_rss_mb": raw["peak_rss_mb"],
        }
        log(f"load   {LABELS[name]:<36} {pipelines[name]['images_per_s']['median']} images/s")
    result: dict[str, Any] = {
        "samples": opts.load_samples,
        "distinct_images": data.distinct,
        "workers": opts.workers,
        "batch_size": opts.batch_size,
        "image_size": opts.image_size,
        "pipelines": pipelines,
    }
    if all("error" not in p for p in pipelines.values()):
        ours, theirs = (pipelines[p]["images_per_s"]["median"] for p in PIPELINES)
        result["sightx_ratio"] = sig(ours / theirs, 3)
    return result
