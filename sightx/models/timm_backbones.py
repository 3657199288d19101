"""timm backbones: any of timm's model names as --arch, with SightX's head as timm's classifier.

timm is an optional extra (`pip install 'sightx[timm]'`): it brings about a thousand architectures and
huggingface_hub, safetensors and pyyaml with them, which grading with the torchvision backbones (the
default, and what serve needs) does not use. A torchvision name (sightx.models.factory.ARCHS) always
means torchvision's model; `timm:NAME` asks for timm's model of that name (timm:resnet50); any other
name is looked up in timm. Vision transformers are built at the run's --image-size (timm's `img_size`:
the position embedding is sized, and resized from pretrained weights, for it).
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from sightx.errors import SightXError

PREFIX = "timm:"
INSTALL = "pip install 'sightx[timm]'"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.]{0,99}$")


class ArchError(SightXError):
    """An architecture that is not torchvision's or timm's, timm is not installed, or the model lacks what an
    option asks of it (stochastic depth); one line."""


def timm_name(arch: str) -> str:
    """The timm model name an --arch value stands for."""
    return arch[len(PREFIX) :] if arch.startswith(PREFIX) else arch


def plausible(arch: str) -> bool:
    """Whether `arch` is shaped like a timm model name (checked without importing timm: a checkpoint's field)."""
    return bool(_NAME.match(timm_name(arch)))


def _timm(arch: str) -> Any:
    try:
        import timm
    except ImportError:
        raise ArchError(f"--arch {arch} is not a torchvision model SightX knows; timm models need timm: {INSTALL}") from None
    return timm


def check(arch: str) -> None:
    """ArchError unless timm is installed and knows `arch`."""
    name = timm_name(arch)
    timm = _timm(arch)
    if not plausible(arch) or not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5] if plausible(arch) else []
        hint = f" (timm has e.g. {', '.join(close)})" if close else ""
        raise ArchError(f"--arch {arch!r} is neither a torchvision model SightX knows nor a timm model{hint}")


def build(arch: str, width: int, image_size: int | None, pretrained: bool = False, drop_path: float | None = None) -> nn.Module:
    """timm's `arch` with a `width`-output classifier; ViT-style models at `image_size`; `drop_path` is timm's
    `drop_path_rate` (stochastic depth), None leaving the model's own default."""
    check(arch)
    timm = _timm(arch)
    name = timm_name(arch)
    kw: dict[str, Any] = {"pretrained": pretrained, "num_classes": width}
    if drop_path is not None:
        kw["drop_path_rate"] = drop_path
    if image_size is not None:
        try:
            return timm.create_model(name, img_size=image_size, **kw)
        except TypeError:  # a model without a position embedding (CNNs): any input size works
            pass
    try:
        return timm.create_model(name, **kw)
    except TypeError as e:
        if "drop_path_rate" not in str(e):
            raise
        raise ArchError(f"--drop-path: timm's {name} has no stochastic depth (no drop_path_rate): leave --drop-path out") from None


def last_block(model: nn.Module) -> nn.Module | None:
    """The last stage or transformer block of a timm model, for Grad-CAM; None if it has neither."""
    for attr in ("stages", "blocks", "layers", "features"):
        seq = getattr(model, attr, None)
        if isinstance(seq, nn.Sequential | nn.ModuleList) and len(seq):
            return seq[-1]
    return None
