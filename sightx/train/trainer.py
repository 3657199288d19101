"""Training wiring: shards -> loaders, model, optimiser, schedule -> epochs of train + evaluate -> checkpoints.

Shaped like torchvision's references/classification/train.py: `train(cfg)` builds everything, then
runs the free functions of `sightx.train.loop` per epoch. Runs single-process or under `torchrun`
(DistributedDataParallel; gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import json
import math
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sightx.contracts import checkpoint as ckpt
from sightx.contracts import manifest as mf
from sightx.contracts import sample as smp
from sightx.evaluation import metrics
from sightx.image.normalization import parse_normalization
from sightx.labels.kinds import TASKS
from sightx.models import heads
from sightx.models.factory import autocast_dtype, build_model_reporting, pick_device
from sightx.train import distributed, finetune, locations, loop
from sightx.train.config import TrainConfig, TrainError
from sightx.train.distributed import Dist
from sightx.train.locations import ShardLocation
from sightx.train.run_dir import RunDir
from sightx.train.stream import StreamConfig, has_gradability, make_loader, shard_addresses, take_bad_samples, take_ungradable


def lr_lambda(total_steps: int, warmup_steps: int, schedule: str) -> Any:
    """Linear warm-up, then cosine to zero or (onecycle) linear down from the peak."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "onecycle":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return f


def read_shards(
    where: str | Path, manifest: str | None = None, task: str = "grade"
) -> tuple[dict[str, Any], list[str], list[str], ShardLocation]:
    """The manifest, the train/val shard addresses and where they are read from, refused unless the set is
    complete and labelled for `task`.

    `where` is the user's own: a folder, an http(s) base, an fsspec URL or a pipe: template (sightx.train.locations);
    `manifest` reads the manifest from another file or URL.
    """
    location = locations.parse(str(where), manifest)
    shard_dir = location.base
    data = location.read_manifest()
    mf.require_labels(data, TASKS[task], shard_dir, f"--task {task}")
    if not data.get("complete", False):
        raise TrainError(f"{shard_dir}: the shards are incomplete (an interrupted sightx-shard?): re-run it to finish them")
    train_shards, val_shards = shard_addresses(location, data, "train"), shard_addresses(location, data, "val")
    if not train_shards:
        raise TrainError(f"{shard_dir}: no finished train shards in the manifest")
    # Presence and size only: a sha256 of every shard would read the whole set (an epoch's I/O) before
    # the first step, on every rank; content damage shows as counted corrupt samples instead.
    problems = location.check(mf.shards_of(data, "train") + mf.shards_of(data, "val"))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        full = f"run sightx-verify {shard_dir} for the full check" if location.local else "sightx-verify checks a downloaded copy in full"
        raise TrainError(f"{shard_dir}: {problems[0]}{more}; {full}")
    return data, train_shards, val_shards, location


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Over the trainable parameters (the classifier only under --freeze backbone), in layer-decayed groups."""
    if cfg.freeze == "backbone":
        finetune.freeze_backbone(model)
    params = finetune.param_groups(model, cfg.lr, cfg.layer_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_step(
    cfg: TrainConfig, device: torch.device, d: Dist | None = None, total_steps: int = 0, warmup_steps: int = 0
) -> tuple[nn.Module, loop.StepContext]:
    """The model and what a training step needs, built as training builds them (the benchmark calls this too).

    With `total_steps` the learning rate follows the warm-up and schedule of `cfg`; without, it is constant.
    """
    d = d or Dist()
    amp = autocast_dtype(device, cfg.amp)
    channels_last = device.type in ("cuda", "cpu")
    model, report = build_model_reporting(cfg.arch, cfg.head, cfg.weights, cfg.image_size, cfg.drop_path)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(cfg, model)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total_steps, warmup_steps, cfg.schedule)) if total_steps else None
    ctx = loop.StepContext(
        model=nn.parallel.DistributedDataParallel(model) if d.world > 1 else model,
        head=heads.get(cfg.head),
        optimizer=opt,
        scaler=torch.amp.GradScaler(device.type, enabled=amp == torch.float16 and device.type == "cuda"),
        device=device,
        amp=amp,
        channels_last=channels_last,
        scheduler=sched,
        norm=parse_normalization(cfg.normalization),
        label_smoothing=cfg.label_smoothing,
        mixup=cfg.mixup,
        cutmix=cfg.cutmix,
        ema=finetune.ema_of(model, cfg.ema) if cfg.ema else None,
        generator=np.random.default_rng(cfg.seed + 7919 * d.rank),
        weights_report=None if report is None else {"summary": report.summary(), **report.to_dict()},
    )
    return model, ctx


@dataclass
class Progress:
    """What a checkpoint carries forward besides the weights."""

    start_epoch: int = 0
    best_kappa: float = -math.inf
    thresholds: list[float] = field(default_factory=lambda: list(metrics.DEFAULT_THRESHOLDS))
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Everything a run holds; `fit` is the epoch loop."""

    def __init__(self, cfg: TrainConfig, d: Dist) -> None:
        self.cfg, self.dist = cfg, d
        self.manifest, train_shards, val_shards, self.location = read_shards(cfg.shards, cfg.manifest, cfg.task)
        if cfg.min_gradability is not None and not has_gradability(self.location, train_shards[0]):
            raise TrainError(
                f"{cfg.shards}: the samples record no gradability score (written before sightx-shard scored it): "
                "re-shard them to use --min-gradability"
            )
        counts = self.manifest["splits"]["train"]["grades"]
        self.head = heads.get(cfg.head)

        device = pick_device(cfg.device)
        if device.type == "cuda" and d.world > 1:
            device = torch.device("cuda", d.local_rank)
            torch.cuda.set_device(device)
        self.steps_per_epoch = max(1, math.ceil(sum(counts) / (cfg.batch_size * d.world)))
        total = self.steps_per_epoch * cfg.epochs
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.model, self.ctx = build_step(cfg, device, d, total, min(total, max(1, int(cfg.warmup_epochs * self.steps_per_epoch))))

        stream = dict(
            image_size=cfg.image_size,
            seed=cfg.seed,
            counts=tuple(counts),
            max_pixels=mf.sample_pixel_limit(self.manifest, smp.MAX_SAMPLE_PIXELS),
            classes=mf.num_classes(self.manifest),
            location=self.location,
            min_gradability=cfg.min_gradability,
        )
        pin = device.type == "cuda"
        sizes = {split: tuple(r["bytes"] for r in mf.shards_of(self.manifest, split)) for split in ("train", "val")}
        train_cfg = StreamConfig(
            tuple(train_shards),
            sizes=sizes["train"],
            train=True,
            shuffle_buffer=cfg.shuffle_buffer,
            balance=cfg.balance,
            decay=cfg.balance_decay,
            loss_weights=cfg.balance == "loss",
            balance_end=cfg.balance_end,
            augment=cfg.augment(),
            **stream,  # type: ignore[arg-type]
        )
        self.train_loader, self.epoch_value = make_loader(train_cfg, cfg.batch_size, cfg.workers, pin_memory=pin)
        self.val_loader = None
        if val_shards:
            val_cfg = StreamConfig(tuple(val_shards), train=False, sizes=sizes["val"], **stream)  # type: ignore[arg-type]
            self.val_loader, _ = make_loader(val_cfg, cfg.batch_size, cfg.workers, pin_memory=pin)

        out = Path(cfg.out)
        if (out / "last.pt").exists() and not cfg.resume:
            raise TrainError(f"{out} already holds a run (last.pt): pass --resume to continue it, or choose another --out")
        self.run_dir = RunDir(out, tensorboard=cfg.tensorboard, main=d.main)
        self.run_dir.write_config(asdict(cfg))
        if self.ctx.weights_report is not None and d.main:
            self.run_dir.write_json("weights.json", self.ctx.weights_report)
            print(self.ctx.weights_report["summary"], file=sys.stderr)
        self.progress = self._resume(out / "last.pt") if cfg.resume and (out / "last.pt").exists() else Progress()

    def _resume(self, last: Path) -> Progress:
        state = ckpt.load(last)
        for key in ("task", "arch", "head"):
            if getattr(state, key) != getattr(self.cfg, key):
                raise TrainError(
                    f"{last} was trained with --{key} {getattr(state, key)}, not {getattr(self.cfg, key)}: resume with the same options"
                )
        t = state.training
        if not set(ckpt.TRAINING_KEYS) <= set(t):
            raise TrainError(f"{last} holds no training state to resume from (a weights-only checkpoint?)")
        if self.ctx.ema is not None:
            self.ctx.ema.module.load_state_dict(state.model)
            self.ctx.ema.n_averaged.fill_(1)
        self.model.load_state_dict(t.get("raw_model", state.model))
        self.ctx.optimizer.load_state_dict(t["optimizer"])
        self.ctx.scheduler.load_state_dict(t["scheduler"])  # type: ignore[union-attr]
        self.ctx.scaler.load_state_dict(t["scaler"])
        torch.set_rng_state(t["rng"]["torch"])
        random.setstate(t["rng"]["python"])
        start = state.epoch + 1
        # Epochs after the checkpoint (a crash between the metrics line and last.pt) are redone, not duplicated.
        history = [h for h in self.run_dir.read_history() if h["epoch"] <= start]
        self.run_dir.write_history(history)
        return Progress(start, t["best_kappa"], list(state.thresholds), history)

    def _checkpoint(self, epoch: int, val: dict[str, Any] | None) -> ckpt.Checkpoint:
        p = self.progress
        training = {
            "optimizer": self.ctx.optimizer.state_dict(),
            "scheduler": self.ctx.scheduler.state_dict(),  # type: ignore[union-attr]
            "scaler": self.ctx.scaler.state_dict(),
            "best_kappa": p.best_kappa,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
        }
        model = self.model.state_dict()
        if self.ctx.ema is not None:  # the averaged weights grade; the raw ones resume
            training["raw_model"], model = model, self.ctx.ema.module.state_dict()
        return ckpt.Checkpoint(
            task=self.cfg.task,
            arch=self.cfg.arch,
            head=self.cfg.head,
            image_size=self.cfg.image_size,
            preprocess=self.manifest["options"]["preprocess"],
            thresholds=list(p.thresholds),
            model=model,
            epoch=epoch,
            config=asdict(self.cfg),
            val=json.loads(json.dumps(val)),  # plain types only: weights_only loading refuses numpy scalars
            training=training,
            normalization=self.ctx.norm,
        )

    def _bad_samples(self, loader: Any, epoch: int, split: str) -> int:
        """Corrupt samples skipped in the pass just ended, over all ranks; TrainError past --max-bad-samples
        (every rank sees the same sum, so all stop together)."""
        (bad,) = distributed.sum_over_ranks(self.dist, [float(take_bad_samples(loader))])
        if bad > self.cfg.max_bad_samples:
            raise TrainError(
                f"{int(bad)} corrupt {split} samples skipped in epoch {epoch + 1}, more than --max-bad-samples "
                f"{self.cfg.max_bad_samples}: `sightx-verify {self.cfg.shards if self.location.local else 'COPY'} --deep` lists them"
            )
        return int(bad)

    def _ungradable(self, loader: Any) -> int:
        """Samples below --min-gradability skipped in the pass just ended, over all ranks."""
        (n,) = distributed.sum_over_ranks(self.dist, [float(take_ungradable(loader))])
        return int(n)

    def fit(self) -> list[dict[str, Any]]:
        cfg, p = self.cfg, self.progress
        for epoch in range(p.start_epoch, cfg.epochs):
            self.epoch_value.value = epoch
            desc = f"epoch {epoch + 1}/{cfg.epochs}"
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                **loop.train_one_epoch(
                    self.ctx, self.train_loader, self.dist, steps=self.steps_per_epoch, desc=desc, progress=cfg.progress
                ),
            }
            row["bad_samples"] = self._bad_samples(self.train_loader, epoch, "train")
            if cfg.min_gradability is not None:
                row["ungradable_skipped"] = self._ungradable(self.train_loader)
            val = None
            if self.val_loader is not None:
                graded = self.model if self.ctx.ema is None else self.ctx.ema.module
                outputs, grades, _ = loop.predict(self.ctx, graded, self.val_loader, self.dist)
                row["val_bad_samples"] = self._bad_samples(self.val_loader, epoch, "val")
                if cfg.min_gradability is not None:
                    row["val_ungradable_skipped"] = self._ungradable(self.val_loader)
                val = loop.evaluate(self.head, outputs, grades)
                row["val"] = val
                if "thresholds" in val:  # the tuned thresholds are what this epoch's checkpoint grades with
                    p.thresholds = list(val["thresholds"])
            if not self.dist.main:
                continue
            # best_kappa (its name kept for old checkpoints) holds the head's selection metric: kappa, or Reject AUC
            improved = val is not None and self.head.selection(val) > p.best_kappa
            if improved:
                p.best_kappa = self.head.selection(val)  # type: ignore[arg-type]
            p.history.append(row)
            self.run_dir.write_history(p.history)  # before last.pt: a resume drops lines past the checkpoint
            state = self._checkpoint(epoch, val)
            if improved or val is None:
                ckpt.save(Path(cfg.out) / "best.pt", state)
            ckpt.save(Path(cfg.out) / "last.pt", state)
            self.run_dir.report(p.history, cfg.epochs, cfg.progress)
        distributed.barrier(self.dist)
        return p.history

    def close(self) -> None:
        self.run_dir.close()


def train(cfg: TrainConfig) -> list[dict[str, Any]]:
    """Train per `cfg`; returns one metrics row per epoch run (all epochs when resumed)."""
    d = distributed.init(cfg.device)
    try:
        trainer = Trainer(cfg, d)
        try:
            return trainer.fit()
        finally:
            trainer.close()
    finally:
        distributed.close(d)
