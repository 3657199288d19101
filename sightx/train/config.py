"""The training configuration: every option and its default, declared once (the CLI reads them from here).

Light on purpose: `sightx-train --help` imports this module, so what validation needs from torch-side
modules (architectures, heads, the augmentation) is imported when a config is made, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from sightx.errors import SightXError
from sightx.labels.grades import NUM_GRADES
from sightx.labels.kinds import TASKS, classes
from sightx.parallel.pool import default_workers

if TYPE_CHECKING:
    from sightx.train.augment import Augment

BALANCE_MODES = ("loss", "sample", "progressive", "none")  # sightx.train.balance: what each does
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle")
AMP_MODES = ("auto", "off", "bf16", "fp16")


class TrainError(SightXError):
    """A problem the user must fix; reported as one line."""


@dataclass
class TrainConfig:
    shards: str  # a folder, an http(s) base, an fsspec URL or a pipe: template (sightx.train.locations)
    manifest: str | None = None  # the manifest from this file or URL instead of beside the shards
    out: str = "runs/default"
    task: str = "grade"  # grade: DR grades 0-4; gradability: EyeQ quality classes (its head is always "quality")
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
    balance_end: tuple[float, ...] | None = None  # progressive: per-grade weights on the natural mix it ends at
    workers: int = min(8, default_workers())
    shuffle_buffer: int = 1000
    max_bad_samples: int = 10  # corrupt samples skipped per pass (train or val) before the run stops
    min_gradability: float | None = None  # skip samples whose recorded gradability score is below this
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    normalization: str = "imagenet"  # a name in augment.NORMALIZATIONS, or M,M,M/S,S,S
    # Training augmentation (sightx.inference.transforms.Augment): any rotation, flips, zoom, stretch, shift, colour.
    rotate: float = 180.0  # degrees either way
    translate: float = 0.04  # fraction of the side
    scale: tuple[float, float] = (0.92, 1.08)
    stretch: tuple[float, float] = (1.0, 1.0)  # aspect ratio range
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.15
    randaugment: tuple[int, int] | None = None  # RandAugment (Cubuk et al. 2020): N operations of magnitude M (0-30); None: off
    # Fine-tuning (sightx.train.finetune): a linear probe, layer-wise lr decay, label smoothing, stochastic depth.
    freeze: str = "none"  # backbone: train only the classifier (a linear probe)
    layer_decay: float = 1.0  # lr * decay**(layers below the head); 1: one lr for all
    label_smoothing: float = 0.0  # classify/quality heads only
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup (Zhang et al. 2018); 0: off; classify/quality heads only
    cutmix: float = 0.0  # Beta(alpha, alpha) of CutMix (Yun et al. 2019); 0: off; with mixup, one per batch at 0.5
    ema: float = 0.0  # decay of an exponential moving average of the weights, validated and saved; 0: off
    drop_path: float | None = None  # stochastic depth rate; None: the architecture's own (torchvision's ConvNeXt/EfficientNet have one)
    recipe: str = "none"  # the published recipe the defaults came from (sightx.train.recipes), for the record
    resume: bool = False
    tensorboard: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        from sightx.image.normalization import parse_normalization
        from sightx.models.factory import check_arch
        from sightx.models.heads import GRADE_HEADS

        if self.task not in TASKS:
            raise TrainError(f"--task must be one of {', '.join(TASKS)}")
        if self.task == "gradability":
            if self.head not in ("classify", "quality"):
                raise TrainError(f"--task gradability trains a 3-way quality classifier: --head {self.head} does not apply")
            self.head = "quality"
        for name, allowed in (
            ("balance", BALANCE_MODES),
            ("head", GRADE_HEADS if self.task == "grade" else ("quality",)),
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("amp", AMP_MODES),
        ):
            if getattr(self, name) not in allowed:
                raise TrainError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}")
        try:
            check_arch(self.arch)
        except SightXError as e:
            raise TrainError(str(e)) from None
        try:
            parse_normalization(self.normalization)
        except ValueError as e:
            raise TrainError(f"--normalization: {e}") from None
        n = classes(TASKS[self.task])
        if self.balance_end is not None and (len(self.balance_end) != n or min(self.balance_end) <= 0):
            raise TrainError(f"--balance-end needs {n} positive weights, one per {'grade' if n == NUM_GRADES else 'quality class'}")
        if self.freeze not in ("none", "backbone"):
            raise TrainError("--freeze must be one of none, backbone")
        if not 0 < self.layer_decay <= 1:
            raise TrainError("--layer-decay must be in (0, 1]")
        if not 0 <= self.label_smoothing < 1:
            raise TrainError("--label-smoothing must be in [0, 1)")
        for name in ("label_smoothing", "mixup", "cutmix"):
            if getattr(self, name) and self.head == "regress":
                raise TrainError(f"--{name.replace('_', '-')} needs class outputs: it does not apply to --head regress")
        for name in ("mixup", "cutmix"):
            if getattr(self, name) < 0:
                raise TrainError(f"--{name} must be >= 0")
        if self.drop_path is not None and not 0 <= self.drop_path < 1:
            raise TrainError("--drop-path must be in [0, 1)")
        if not 0 <= self.ema < 1:
            raise TrainError("--ema must be in [0, 1) (e.g. 0.999)")
        if self.min_gradability is not None and not 0 <= self.min_gradability <= 1:
            raise TrainError("--min-gradability must be between 0 and 1")
        if self.randaugment is not None and (len(self.randaugment) != 2 or self.randaugment[0] < 1 or not 0 <= self.randaugment[1] <= 30):
            raise TrainError("--randaugment must be N,M: N >= 1 operations per image of magnitude 0 <= M <= 30 (RETFound: 2,9)")
        for name in ("scale", "stretch"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise TrainError(f"--{name} must be LOW,HIGH with 0 < LOW <= HIGH")

    def augment(self) -> Augment:
        """The training augmentation these options describe."""
        from sightx.train.augment import Augment

        return Augment(
            self.image_size,
            degrees=self.rotate,
            translate=self.translate,
            scale=tuple(self.scale),  # type: ignore[arg-type]
            stretch=tuple(self.stretch),  # type: ignore[arg-type]
            brightness=self.brightness,
            contrast=self.contrast,
            saturation=self.saturation,
            randaugment=None if self.randaugment is None else tuple(self.randaugment),  # type: ignore[arg-type]
        )


def default(name: str) -> Any:
    """The library's default for a TrainConfig field, for the CLI's option declarations."""
    return next(f.default for f in fields(TrainConfig) if f.name == name)
