"""The training loop as free functions, as in torchvision's references/classification/train.py.

`train_step` is one optimiser step on one batch (the benchmark times exactly this); `train_one_epoch`
runs it over a loader and reports the epoch; `predict` collects a model's outputs over a loader on
every rank; `evaluate` turns outputs into the DR metrics (pure: arrays in, a dict out).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sightx.evaluation import metrics
from sightx.image.normalization import IMAGENET, Normalization
from sightx.inference.transforms import normalize_batch
from sightx.labels.kinds import QUALITY
from sightx.models.factory import autocast
from sightx.models.heads import Head
from sightx.train import distributed
from sightx.train.distributed import Dist


@dataclass
class StepContext:
    """What a training step needs besides the batch."""

    model: nn.Module  # what the forward pass runs: the DDP wrapper or the model itself
    head: Head
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: torch.dtype | None
    channels_last: bool
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    norm: Normalization = IMAGENET
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta alpha; 0: off
    cutmix: float = 0.0  # Beta alpha; 0: off. With mixup too, one of the two per batch, each with probability 0.5
    ema: Any = None  # torch.optim.swa_utils.AveragedModel of the model, updated after every step
    generator: np.random.Generator | None = None  # draws mixup's/cutmix's lambda, box and pairing
    weights_report: dict[str, Any] | None = None  # what --weights FILE loaded, missed and ignored (sightx.models.foreign)


def cutmix_box(lam: float, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int, float]:
    """CutMix's box (Yun et al. 2019, as timm's `rand_bbox`): sides sqrt(1 - lam) of the image's, centred
    uniformly, clipped at the border. Returns (top, bottom, left, right) and the share of the image left
    uncovered: the clipped box's true area, which is what the loss is weighted by, not the drawn lam."""
    ratio = float(np.sqrt(1.0 - lam))
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    top, bottom = int(np.clip(cy - cut_h // 2, 0, height)), int(np.clip(cy + cut_h // 2, 0, height))
    left, right = int(np.clip(cx - cut_w // 2, 0, width)), int(np.clip(cx + cut_w // 2, 0, width))
    return top, bottom, left, right, 1.0 - (bottom - top) * (right - left) / (height * width)


def mix_batch(ctx: StepContext, x: torch.Tensor) -> tuple[torch.Tensor, float, torch.Tensor | None]:
    """Mixup or CutMix of a normalised batch with a shuffle of itself: the mixed images, the share `lam`
    of the loss that goes to the batch's own labels (the rest to the shuffled ones), the shuffle (None: unmixed).
    With both set, one is picked per batch with probability 0.5 (timm's `switch_prob` default)."""
    if ctx.mixup <= 0 and ctx.cutmix <= 0:
        return x, 1.0, None
    rng = ctx.generator or np.random.default_rng()
    use_cutmix = ctx.cutmix > 0 and (ctx.mixup <= 0 or bool(rng.random() < 0.5))
    alpha = ctx.cutmix if use_cutmix else ctx.mixup
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(x))).to(x.device)
    if not use_cutmix:
        return lam * x + (1 - lam) * x[perm], lam, perm
    top, bottom, left, right, lam = cutmix_box(lam, x.shape[-2], x.shape[-1], rng)
    x = x.clone()
    x[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
    return x, lam, perm


def train_step(ctx: StepContext, images: torch.Tensor, grades: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """One optimiser step on a uint8 NCHW batch; returns the (detached) weighted loss."""
    x = normalize_batch(images, ctx.device, ctx.channels_last, ctx.norm)
    y = grades.to(ctx.device, non_blocking=True)
    w = weights.to(ctx.device, dtype=torch.float32, non_blocking=True)
    x, lam, perm = mix_batch(ctx, x)
    with autocast(ctx.device, ctx.amp):
        out = ctx.model(x)
    loss = ctx.head.loss(out, y, w, ctx.label_smoothing)
    if perm is not None:  # cross-entropy is linear in the target: the mixed target's loss is the mix of the two
        loss = lam * loss + (1 - lam) * ctx.head.loss(out, y[perm], w[perm], ctx.label_smoothing)
    ctx.optimizer.zero_grad(set_to_none=True)
    ctx.scaler.scale(loss).backward()
    ctx.scaler.step(ctx.optimizer)
    ctx.scaler.update()
    if ctx.scheduler is not None:
        ctx.scheduler.step()
    if ctx.ema is not None:
        ctx.ema.update_parameters(getattr(ctx.model, "module", ctx.model))
    return loss.detach()


def train_one_epoch(ctx: StepContext, loader: Any, d: Dist, *, steps: int, desc: str, progress: bool) -> dict[str, Any]:
    """One pass over `loader`. A batch of one image is never trained on: BatchNorm needs two values
    per channel (it fails outright when the last feature map is 1x1) and learns nothing useful from one."""
    ctx.model.train()
    loss_sum, seen, wait, skipped = 0.0, 0, 0.0, 0
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, unit="step", disable=not (progress and d.main), leave=False)
    join = ctx.model.join() if d.world > 1 else contextlib.nullcontext()  # type: ignore[operator]
    with join:
        batches = iter(loader)
        while True:
            t = time.perf_counter()
            try:
                images, grades, weights, _ = next(batches)
            except StopIteration:
                break
            wait += time.perf_counter() - t
            if len(grades) < 2:
                skipped += len(grades)
                continue
            loss = train_step(ctx, images, grades, weights)
            seen += len(grades)
            loss_sum += float(loss) * len(grades)
            elapsed = time.perf_counter() - start
            bar.update()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", img_s=f"{seen / elapsed:.1f}", data=f"{wait / elapsed:.0%}", refresh=False)
    bar.close()
    elapsed = time.perf_counter() - start
    seen_all, loss_all, skipped_all = distributed.sum_over_ranks(d, [float(seen), loss_sum, float(skipped)])
    lr = ctx.scheduler.get_last_lr()[0] if ctx.scheduler is not None else ctx.optimizer.param_groups[0]["lr"]
    return {
        "train_loss": round(loss_all / max(seen_all, 1), 5),
        "train_images": int(seen_all),
        "skipped_single_batches": int(skipped_all),
        "images_per_s": round(seen / elapsed, 2),
        "data_wait": round(wait / elapsed, 4),
        "lr": float(lr),
        "seconds": round(elapsed, 2),
    }


@torch.no_grad()
def predict(ctx: StepContext, model: nn.Module, loader: Any, d: Dist) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Head outputs (probabilities or scores), grades and keys for every sample of every rank."""
    model.eval()
    outs, grades, keys = [], [], []
    for images, y, _, k in loader:
        x = normalize_batch(images, ctx.device, ctx.channels_last, ctx.norm)
        with autocast(ctx.device, ctx.amp):
            out = model(x)
        outs.append(ctx.head.activate(out).cpu().numpy())
        grades.append(y.numpy())
        keys += list(k)
    parts = distributed.gather(d, (outs, grades, keys))
    outs = [o for p in parts for o in p[0]]
    grades = [y for p in parts for y in p[1]]
    keys = [k for p in parts for k in p[2]]
    return (
        np.concatenate(outs) if outs else ctx.head.empty(),
        np.concatenate(grades) if grades else np.zeros(0, int),
        keys,
    )


def evaluate(head: Head, outputs: np.ndarray, grades: np.ndarray) -> dict[str, Any]:
    """DR metrics of validation outputs. A head with thresholds reports kappa at the default ones and
    at thresholds tuned on these outputs; the tuned ones are returned in `thresholds` for the caller
    to keep (or not). A quality head gets the quality metrics (sightx.evaluation.metrics.quality_evaluate)."""
    if head.labels == QUALITY:
        return {**metrics.quality_evaluate(grades, outputs), "loss": round(head.val_loss(outputs, grades), 5)}
    pred = head.grades(outputs, list(metrics.DEFAULT_THRESHOLDS))
    result = metrics.evaluate(grades, pred, head.referable_score(outputs))
    result["loss"] = round(head.val_loss(outputs, grades), 5)
    tuned = head.tune_thresholds(outputs, grades)
    if tuned is not None:
        result["kappa_tuned_thresholds"] = round(metrics.quadratic_weighted_kappa(grades, head.grades(outputs, tuned)), 4)
        result["thresholds"] = [round(t, 4) for t in tuned]
    return result
