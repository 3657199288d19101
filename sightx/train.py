"""Streaming ResNet training on SightX shards, with DR metrics, checkpoints and resume.

Shaped like torchvision's references/classification/train.py: config -> data -> model ->
optimiser/schedule -> per-epoch train + evaluate -> checkpoint. Runs single-process or under
`torchrun` (DistributedDataParallel; gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from sightx import metrics
from sightx.atomic import atomic_write_bytes, atomic_write_text
from sightx.balance import MODES
from sightx.contracts import manifest as mf
from sightx.model import autocast_dtype, build_model, pick_device
from sightx.plots import confusion_png, learning_curve_png
from sightx.stream import StreamConfig, make_loader, normalize_batch, shard_paths

CHECKPOINT_VERSION = 1


class TrainError(Exception):
    """A problem the user must fix; reported as one line."""


@dataclass
class TrainConfig:
    shards: str
    out: str = "runs/default"
    arch: str = "resnet50"
    head: str = "classify"
    weights: str = "none"
    image_size: int = 512
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    balance: str = "progressive"
    balance_decay: float = 0.7
    workers: int = 2
    shuffle_buffer: int = 1000
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    resume: bool = False
    tensorboard: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.balance not in MODES:
            raise TrainError(f"--balance must be one of {', '.join(MODES)}")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_name: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; a plain run is world size 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _loss(head: str, out: torch.Tensor, grades: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-sample weighted mean of cross-entropy (classify) or squared error on the grade (regress)."""
    if head == "classify":
        per_sample = F.cross_entropy(out.float(), grades, reduction="none")
    else:
        per_sample = F.mse_loss(out.float().squeeze(1), grades.float(), reduction="none")
    return (per_sample * weights).sum() / weights.sum()


def _lr_lambda(total_steps: int, warmup_steps: int, schedule: str) -> Any:
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "onecycle":  # linear down after the warm-up peak
            return max(0.0, 1.0 - progress)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return f


def _checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Tensors and plain data only (weights_only): a checkpoint can never run code on load."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainError(f"checkpoint {path} not found") from None
    except Exception as e:
        raise TrainError(f"{path}: not a SightX checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != "sightx-checkpoint":
        raise TrainError(f"{path}: not a SightX checkpoint")
    return state


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.dist = _init_distributed(cfg.device)
        self.out = Path(cfg.out)
        shard_dir = Path(cfg.shards)
        try:
            self.manifest = mf.read(shard_dir)
        except mf.ManifestError as e:
            raise TrainError(str(e)) from None
        self.train_shards = shard_paths(shard_dir, self.manifest, "train")
        self.val_shards = shard_paths(shard_dir, self.manifest, "val")
        if not self.manifest.get("complete", False):
            raise TrainError(f"{shard_dir}: the shards are incomplete (an interrupted sightx-shard?): re-run it to finish them")
        if not self.train_shards:
            raise TrainError(f"{shard_dir}: no finished train shards in the manifest")
        self.counts = self.manifest["splits"]["train"]["grades"]
        self.n_train = sum(self.counts)

        device = pick_device(cfg.device)
        if device.type == "cuda" and self.dist.world > 1:
            device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        self.amp = autocast_dtype(device, cfg.amp)
        self.channels_last = device.type in ("cuda", "cpu")

        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        model = build_model(cfg.arch, cfg.head, cfg.weights).to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ddp = nn.parallel.DistributedDataParallel(model) if self.dist.world > 1 else model

        params = [p for p in model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            self.opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
        else:
            self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.steps_per_epoch = max(1, math.ceil(self.n_train / (cfg.batch_size * self.dist.world)))
        total = self.steps_per_epoch * cfg.epochs
        warmup = min(total, max(1, int(cfg.warmup_epochs * self.steps_per_epoch)))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _lr_lambda(total, warmup, cfg.schedule))
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == torch.float16 and device.type == "cuda")

        stream = dict(image_size=cfg.image_size, seed=cfg.seed, counts=tuple(self.counts))
        self.train_loader, self.epoch_value = make_loader(
            StreamConfig(
                tuple(self.train_shards),
                train=True,
                shuffle_buffer=cfg.shuffle_buffer,
                balance=cfg.balance,
                decay=cfg.balance_decay,
                loss_weights=cfg.balance == "loss",
                **stream,
            ),
            cfg.batch_size,
            cfg.workers,
            pin_memory=device.type == "cuda",
        )
        self.val_loader = None
        if self.val_shards:
            self.val_loader, _ = make_loader(
                StreamConfig(tuple(self.val_shards), train=False, **stream),
                cfg.batch_size,
                cfg.workers,
                pin_memory=device.type == "cuda",
            )
        self.start_epoch = 0
        self.best_kappa = -math.inf
        self.thresholds = list(metrics.DEFAULT_THRESHOLDS)
        self.history: list[dict[str, Any]] = []
        self.writer = self._tensorboard() if cfg.tensorboard and self.dist.main else None
        self._prepare_out()

    def _tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrainError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        return SummaryWriter(str(self.out / "tensorboard"))

    def _prepare_out(self) -> None:
        last = self.out / "last.pt"
        if last.exists() and not self.cfg.resume:
            raise TrainError(f"{self.out} already holds a run (last.pt): pass --resume to continue it, or choose another --out")
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
        if self.cfg.resume and last.exists():
            state = load_checkpoint(last)
            for key in ("arch", "head"):
                if state[key] != getattr(self.cfg, key):
                    raise TrainError(
                        f"{last} was trained with --{key} {state[key]}, not {getattr(self.cfg, key)}: resume with the same options"
                    )
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng"]["torch"])
            random.setstate(state["rng"]["python"])
            self.start_epoch = state["epoch"] + 1
            self.best_kappa = state["best_kappa"]
            self.thresholds = list(state["thresholds"])
            # Epochs after the checkpoint (a crash between the metrics line and last.pt) are redone, not duplicated.
            self.history = [h for h in self._read_history() if h["epoch"] <= self.start_epoch]
            if self.dist.main:
                self._write_history()

    def _read_history(self) -> list[dict[str, Any]]:
        path = self.out / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _write_history(self) -> None:
        atomic_write_text(self.out / "metrics.jsonl", "".join(json.dumps(h, sort_keys=True) + "\n" for h in self.history))

    def _autocast(self) -> Any:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.ddp.train()
        self.epoch_value.value = epoch
        loss_sum, seen, wait, steps = 0.0, 0, 0.0, 0
        start = time.perf_counter()
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
            unit="step",
            disable=not (self.cfg.progress and self.dist.main),
            leave=False,
        )
        join = self.ddp.join() if self.dist.world > 1 else contextlib.nullcontext()
        with join:
            batches = iter(self.train_loader)
            while True:
                t = time.perf_counter()
                try:
                    images, grades, weights, _ = next(batches)
                except StopIteration:
                    break
                wait += time.perf_counter() - t
                x = normalize_batch(images, self.device, self.channels_last)
                y = grades.to(self.device, non_blocking=True)
                w = weights.to(self.device, dtype=torch.float32, non_blocking=True)
                with self._autocast():
                    out = self.ddp(x)
                loss = _loss(self.cfg.head, out, y, w)
                self.opt.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.opt)
                self.scaler.update()
                self.sched.step()
                steps += 1
                seen += len(grades)
                loss_sum += float(loss.detach()) * len(grades)
                elapsed = time.perf_counter() - start
                bar.update()
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", img_s=f"{seen / elapsed:.1f}", data=f"{wait / elapsed:.0%}", refresh=False)
        bar.close()
        elapsed = time.perf_counter() - start
        if self.dist.world > 1:  # report the epoch as a whole, not rank 0's part of it
            totals = torch.tensor([float(seen), loss_sum], dtype=torch.float64)
            dist.all_reduce(totals)
            seen, loss_sum = int(totals[0]), float(totals[1])
        return {
            "train_loss": round(loss_sum / max(seen, 1), 5),
            "train_images": seen,
            "images_per_s": round(seen / elapsed, 2),
            "data_wait": round(wait / elapsed, 4),
            "lr": self.sched.get_last_lr()[0],
            "seconds": round(elapsed, 2),
        }

    @torch.no_grad()
    def predict_loader(self, loader: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Model outputs (probabilities or scores) and grades for every sample this rank reads."""
        self.ddp.eval()
        outs, grades, keys = [], [], []
        for images, y, _, k in loader:
            x = normalize_batch(images, self.device, self.channels_last)
            with self._autocast():
                out = self.model(x).float()
            outs.append((out.softmax(1) if self.cfg.head == "classify" else out.squeeze(1)).cpu().numpy())
            grades.append(y.numpy())
            keys += list(k)
        if self.dist.world > 1:
            gathered: list[Any] = [None] * self.dist.world
            dist.all_gather_object(gathered, (outs, grades, keys))
            outs = [o for g in gathered for o in g[0]]
            grades = [y for g in gathered for y in g[1]]
            keys = [k for g in gathered for k in g[2]]
        shape = (0, 5) if self.cfg.head == "classify" else (0,)
        return (np.concatenate(outs) if outs else np.zeros(shape)), (np.concatenate(grades) if grades else np.zeros(0, int)), keys

    def validate(self) -> dict[str, Any] | None:
        if self.val_loader is None:
            return None
        out, y, _ = self.predict_loader(self.val_loader)
        if self.cfg.head == "classify":
            pred = out.argmax(1)
            referable = out[:, 2:].sum(1)
            loss = float(-np.log(np.clip(out[np.arange(len(y)), y], 1e-7, 1)).mean())
        else:
            self.thresholds = [float(t) for t in metrics.optimize_thresholds(out, y)]
            pred = metrics.apply_thresholds(out, metrics.DEFAULT_THRESHOLDS)
            referable = out
            loss = float(((out - y) ** 2).mean())
        result = metrics.evaluate(y, pred, referable)
        result["loss"] = round(loss, 5)
        if self.cfg.head == "regress":
            tuned = metrics.apply_thresholds(out, self.thresholds)
            result["kappa_tuned_thresholds"] = round(metrics.quadratic_weighted_kappa(y, tuned), 4)
            result["thresholds"] = [round(t, 4) for t in self.thresholds]
        return result

    def _state(self, epoch: int, val: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "format": "sightx-checkpoint",
            "version": CHECKPOINT_VERSION,
            "epoch": epoch,
            "arch": self.cfg.arch,
            "head": self.cfg.head,
            "image_size": self.cfg.image_size,
            "preprocess": self.manifest["options"]["preprocess"],
            "thresholds": list(self.thresholds),
            "config": asdict(self.cfg),
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_kappa": self.best_kappa,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
            "val": json.loads(json.dumps(val)),  # plain types only: weights_only loading refuses numpy scalars
        }

    def fit(self) -> list[dict[str, Any]]:
        for epoch in range(self.start_epoch, self.cfg.epochs):
            row: dict[str, Any] = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            val = self.validate()
            if val is not None:
                row["val"] = val
            if not self.dist.main:
                continue
            improved = val is not None and val["kappa"] > self.best_kappa
            if improved:
                self.best_kappa = val["kappa"]
            self.history.append(row)
            self._write_history()  # before last.pt: a resume drops lines past the checkpoint
            state = self._state(epoch, val)
            if improved or val is None:
                _checkpoint(self.out / "best.pt", state)
            _checkpoint(self.out / "last.pt", state)
            self._report(row)
        if self.dist.world > 1:
            dist.barrier()
        return self.history

    def _report(self, row: dict[str, Any]) -> None:
        val = row.get("val")
        learning_curve_png(self.history, self.out / "learning_curve.png")
        if val is not None:
            confusion_png(val["confusion"], self.out / "confusion.png", f"epoch {row['epoch']}: QWK {val['kappa']:.3f}")
        if self.writer is not None:
            self.writer.add_scalar("train/loss", row["train_loss"], row["epoch"])
            if val is not None:
                self.writer.add_scalar("val/kappa", val["kappa"], row["epoch"])
                self.writer.add_scalar("val/loss", val["loss"], row["epoch"])
        if self.cfg.progress:
            print(
                f"epoch {row['epoch']}/{self.cfg.epochs}: train loss {row['train_loss']:.4f}, "
                f"{row['images_per_s']} img/s, data wait {row['data_wait']:.0%}, lr {row['lr']:.2e}",
                flush=True,
            )
            if val is not None:
                print(metrics.format_report(val), flush=True)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.dist.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def train(cfg: TrainConfig) -> list[dict[str, Any]]:
    """Train per `cfg`; returns one metrics row per epoch run (all epochs when resumed)."""
    trainer = Trainer(cfg)
    try:
        return trainer.fit()
    finally:
        trainer.close()
