"""A training checkpoint (`best.pt`, `last.pt`): written and read here, versioned, tensors and plain data only.

Loading never runs code (`torch.load(weights_only=True)`), checks the format and version, and checks the
fields a grader acts on (architecture, head, input size, preprocessing), so an edited or foreign file is
refused with one line instead of failing deep inside model construction.

Version 2 adds `task`: "grade" (a DR grader) or "gradability" (an image-quality classifier, head
"quality", trained on EyeQ-labelled shards). Version 1 files still load, as task "grade".

Optional keys, absent unless used: `temperature` (sightx-evaluate --fit-temperature; a classifier's logits are
divided by it when grading) and, in a --ema run, `raw_model` (the optimiser's weights, for --resume; `model`
then holds the averaged weights that grade).
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sightx.errors import SightXError, one_line
from sightx.files.atomic import atomic_write_bytes
from sightx.image.normalization import IMAGENET, Normalization
from sightx.image.preprocess import PreprocessOptions
from sightx.labels.grades import NUM_GRADES
from sightx.models.factory import valid_arch_name
from sightx.models.heads import HEADS

FORMAT = "sightx-checkpoint"
VERSION = 2
READABLE = (1, 2)  # version 1: before `task`, always a DR grader
TASKS = {"grade": ("classify", "regress"), "gradability": ("quality",)}  # task -> the heads it trains
# The optimiser, scheduler, scaler and RNG states: only a resumed run needs them.
TRAINING_KEYS = ("optimizer", "scheduler", "scaler", "best_kappa", "rng")
# Only with --ema: `model` holds the averaged weights (what grades), `raw_model` the weights the optimiser moves.
OPTIONAL_TRAINING_KEYS = ("raw_model",)


class CheckpointError(SightXError):
    """A checkpoint that is missing, not SightX's, of an unknown version, or edited out of shape."""


@dataclass
class Checkpoint:
    arch: str
    head: str
    image_size: int
    preprocess: dict[str, Any]
    thresholds: list[float]
    model: dict[str, torch.Tensor]
    epoch: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    val: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)  # TRAINING_KEYS, for --resume
    normalization: Normalization = IMAGENET  # absent from checkpoints written before it was an option: ImageNet
    sha256: str = ""  # of the file it was read from
    task: str = "grade"  # absent from version-1 checkpoints: DR grading
    # Temperature scaling fitted by sightx-evaluate --fit-temperature (a classifier's logits / T); None: not fitted.
    temperature: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "task": self.task,
            "epoch": self.epoch,
            "arch": self.arch,
            "head": self.head,
            "image_size": self.image_size,
            "preprocess": self.preprocess,
            "thresholds": list(self.thresholds),
            "config": self.config,
            "model": self.model,
            "normalization": self.normalization.to_dict(),
            **{k: self.training[k] for k in TRAINING_KEYS + OPTIONAL_TRAINING_KEYS if k in self.training},
            "val": self.val,
            **({"temperature": float(self.temperature)} if self.temperature is not None else {}),
        }


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Atomically, so a crash mid-write never leaves a half checkpoint under the final name."""
    buf = io.BytesIO()
    torch.save(checkpoint.to_dict(), buf)
    atomic_write_bytes(path, buf.getvalue())


def load(path: Path) -> Checkpoint:
    """Read and check a checkpoint; CheckpointError (one line) for anything SightX did not write."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} not found") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # pickled objects, corrupt archives: refused, never unpickled
        raise CheckpointError(f"{path}: not a SightX checkpoint ({type(e).__name__})") from None
    return from_state(state, str(path), hashlib.sha256(data).hexdigest())


def from_state(state: Any, where: str, sha256: str = "") -> Checkpoint:
    """A checkpoint's dictionary (as `to_dict` makes it; read from a .pt, a hub folder's config.json and
    weights, or an export's metadata) checked as `load` checks a file; CheckpointError names `where`."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not a SightX checkpoint")
    version = state.get("version")
    if version not in READABLE:
        raise CheckpointError(f"{where}: checkpoint version {version!r}; this SightX reads versions {', '.join(map(str, READABLE))}")
    problem = _problem(state)
    if problem:
        raise CheckpointError(f"{where}: {problem}")
    return Checkpoint(
        arch=state["arch"],
        head=state["head"],
        image_size=state["image_size"],
        preprocess=state["preprocess"],
        thresholds=[float(t) for t in state["thresholds"]],
        model=state["model"],
        epoch=state.get("epoch", 0),
        config=state.get("config") or {},
        val=state.get("val"),
        training={k: state[k] for k in TRAINING_KEYS + OPTIONAL_TRAINING_KEYS if k in state},
        normalization=_normalization(state.get("normalization")),
        sha256=sha256,
        task=state.get("task", "grade"),
        temperature=state.get("temperature"),
    )


def _normalization(value: Any) -> Normalization:
    if value is None:
        return IMAGENET
    return Normalization(tuple(value["mean"]), tuple(value["std"]))  # checked in _problem


def _finite(value: Any) -> bool:
    """A real number: NaN or infinity would grade every photo the same silently."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _problem(state: dict[str, Any]) -> str | None:
    task = state.get("task", "grade")
    if task not in TASKS:
        return f"task {str(task)[:40]!r} is not one of {', '.join(TASKS)}"
    if state.get("head") in HEADS and state["head"] not in TASKS[task]:
        return f"head {state['head']!r} does not go with task {task!r} ({', '.join(TASKS[task])})"
    if not valid_arch_name(state.get("arch")):
        return f"arch {str(state.get('arch'))[:40]!r} is neither a torchvision model SightX knows nor a timm model name"
    if state.get("head") not in HEADS:
        return f"head {state.get('head')!r} is not one of {', '.join(HEADS)}"
    size = state.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= 4096:
        return f"image_size {size!r} is not a size in pixels"
    if not isinstance(state.get("preprocess"), dict):
        return "preprocess options missing"
    try:
        PreprocessOptions.from_dict(state["preprocess"])
    except (TypeError, ValueError) as e:
        return f"preprocess options are not valid ({one_line(str(e))})"
    thresholds = state.get("thresholds")
    if not isinstance(thresholds, list | tuple) or len(thresholds) != NUM_GRADES - 1 or not all(map(_finite, thresholds)):
        return f"thresholds are not {NUM_GRADES - 1} numbers"
    norm = state.get("normalization")
    if norm is not None and not (
        isinstance(norm, dict)
        and all(isinstance(norm.get(k), list) and len(norm[k]) == 3 and all(map(_finite, norm[k])) for k in ("mean", "std"))
        and min(norm["std"]) > 0
    ):
        return "normalization is not three means and three positive stds"
    temperature = state.get("temperature")
    if temperature is not None and not (_finite(temperature) and 0.01 <= temperature <= 100):
        return f"temperature {temperature!r} is not a number between 0.01 and 100"
    if not isinstance(state.get("model"), dict) or not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        return "model weights missing"
    return None
