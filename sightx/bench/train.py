"""Train stage: model images/s (forward, backward, AdamW step, as sightx-train runs it) on fixed
batches, so the figure is the model's alone; the load stage says whether the stream keeps up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sightx.bench.isolate import isolated
from sightx.bench.options import BenchError, BenchOptions
from sightx.bench.stats import sig, spread


@dataclass(frozen=True)
class TrainRun:
    arch: str
    image_size: int
    batch_size: int
    steps: int
    reps: int
    warmup: bool
    device: str


def measure(run: TrainRun) -> dict[str, Any]:
    """One untimed step (allocator, cuDNN autotuning), then `reps` x `steps` timed steps."""
    import torch

    from sightx.models.factory import pick_device
    from sightx.train.config import TrainConfig
    from sightx.train.loop import train_step
    from sightx.train.trainer import build_step

    device = pick_device(run.device)
    model, ctx = build_step(TrainConfig(shards="", arch=run.arch, device=run.device), device)
    model.train()
    amp = ctx.amp
    images = torch.randint(0, 256, (run.batch_size, 3, run.image_size, run.image_size), dtype=torch.uint8)
    grades = torch.randint(0, 5, (run.batch_size,))
    weights = torch.ones(run.batch_size)

    def step() -> None:
        train_step(ctx, images, grades, weights)  # exactly the trainer's step
        if device.type == "cuda":
            torch.cuda.synchronize()

    if run.warmup:
        step()
    rates = []
    for _ in range(run.reps):
        start = time.perf_counter()
        for _ in range(run.steps):
            step()
        rates.append(run.batch_size * run.steps / (time.perf_counter() - start))
    amp_name = str(amp).replace("torch.", "") if amp else "off"
    return {"rates": rates, "device": str(device), "amp": amp_name, "threads": torch.get_num_threads()}


def stage(opts: BenchOptions, load: dict[str, Any] | None, log: Callable[[str], None]) -> dict[str, Any]:
    """Model images/s and, when the load stage ran, loader images/s over it (>= 1: it keeps up)."""
    run = TrainRun(opts.arch, opts.image_size, opts.batch_size, opts.train_steps, opts.reps, opts.warmup, opts.device)
    result: dict[str, Any] = {"arch": opts.arch, "image_size": opts.image_size, "batch_size": opts.batch_size}
    try:
        raw = isolated(measure, run)
    except BenchError as e:
        log(f"train  {opts.arch}: failed: {e}")
        return {**result, "error": str(e)}
    result.update({k: raw[k] for k in ("device", "amp", "threads", "peak_rss_mb")}, images_per_s=spread(raw["rates"]))
    log(f"train  {opts.arch} @{opts.image_size} on {raw['device']}: {result['images_per_s']['median']} images/s")
    stream = (load or {}).get("pipelines", {}).get("sightx", {}).get("images_per_s")
    if stream:
        result["loader_images_per_s"] = stream["median"]
        result["loader_over_model"] = sig(stream["median"] / result["images_per_s"]["median"], 3)
    return result
