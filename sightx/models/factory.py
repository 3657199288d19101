"""Models and devices: torchvision classification backbones with a DR head; weights through torchvision.

Any of torchvision's ResNet, EfficientNet and ConvNeXt models, under torchvision's own names: the head's
layer replaces the backbone's final linear layer, wherever that model keeps it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from sightx.errors import SightXError, one_line
from sightx.models import foreign, heads, hub_weights, timm_backbones

ARCHS = (
    *(f"resnet{d}" for d in (18, 34, 50, 101, 152)),
    *(f"efficientnet_b{i}" for i in range(8)),
    *(f"efficientnet_v2_{s}" for s in ("s", "m", "l")),
    *(f"convnext_{s}" for s in ("tiny", "small", "base", "large")),
)


class WeightsError(SightXError):
    """Requested weights cannot be had: not cached and not downloadable here, or not a weights file."""


def imagenet_weights(arch: str) -> Any:
    """torchvision's default (best) ImageNet weights enum member for `arch`."""
    return torchvision.models.get_model_weights(arch).DEFAULT


def imagenet_weights_path(arch: str) -> Path:
    """Where torchvision's own cache keeps the ImageNet checkpoint of `arch` ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(imagenet_weights(arch).url)


def _load_imagenet(model: nn.Module, arch: str) -> None:
    """From the torch cache, or downloaded into it by torchvision (checksum checked) the first time."""
    weights = imagenet_weights(arch)
    path = imagenet_weights_path(arch)
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a bad hash or a corrupt file a RuntimeError
        raise WeightsError(
            f"ImageNet weights for {arch} are not in the torch cache ({path}) and could not be downloaded "
            f"({one_line(str(e))}): copy {os.path.basename(path)} into {path.parent}, pass --weights PATH, or use --weights none"
        ) from None
    model.load_state_dict(state)


def _final_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The backbone's last nn.Linear (its ImageNet classifier) and where it sits."""
    name, layer = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent_name, _, attr = name.rpartition(".")
    return model.get_submodule(parent_name) if parent_name else model, attr, layer


def last_feature_block(model: nn.Module) -> nn.Module:
    """The last convolutional stage (ResNet's layer4, EfficientNet's and ConvNeXt's last `features` block,
    a timm model's last stage or block), where Grad-CAM looks: the finest maps that still see the whole lesion."""
    layer4 = getattr(model, "layer4", None)
    if isinstance(layer4, nn.Module):
        return layer4
    block = timm_backbones.last_block(model)
    return block if block is not None else model.features[-1]  # type: ignore[index,return-value]


def classifier(model: nn.Module) -> nn.Module:
    """The layer SightX's head is: timm's classifier, or the torchvision backbone's final linear layer."""
    get = getattr(model, "get_classifier", None)
    if callable(get):
        return get()
    return _final_linear(model)[2]


def is_torchvision(arch: str) -> bool:
    return arch in ARCHS


def check_arch(arch: str) -> None:
    """ArchError (one line) unless `arch` is a torchvision name SightX knows or a timm model (timm installed)."""
    if not is_torchvision(arch):
        timm_backbones.check(arch)


def valid_arch_name(arch: object) -> bool:
    """Whether a checkpoint's arch field names a torchvision model or could name a timm one (no timm import)."""
    return isinstance(arch, str) and (is_torchvision(arch) or timm_backbones.plausible(arch))


def build_model(arch: str, head: str, weights: str = "none", image_size: int | None = None) -> nn.Module:
    """A torchvision or timm backbone whose final layer is the head's width; `weights` is none, imagenet, a path
    or hf-hub:ORG/NAME.
    `image_size` sizes a timm vision transformer's position embedding (CNNs take any size)."""
    return build_model_reporting(arch, head, weights, image_size)[0]


def build_model_reporting(
    arch: str, head: str, weights: str = "none", image_size: int | None = None, drop_path: float | None = None
) -> tuple[nn.Module, foreign.LoadReport | None]:
    """`build_model`, with what a weights file gave (loaded, missing, ignored) when `weights` is a path or hub name.
    `drop_path` is the stochastic depth rate training asks for; None keeps the architecture's own."""
    width = heads.get(head).width
    if not is_torchvision(arch):
        model = timm_backbones.build(arch, width, image_size, pretrained=weights == "imagenet", drop_path=drop_path)
    else:
        model = torchvision.models.get_model(arch, weights=None, **stochastic_depth(arch, drop_path))
        if weights == "imagenet":
            _load_imagenet(model, arch)
        parent, attr, layer = _final_linear(model)
        setattr(parent, attr, nn.Linear(layer.in_features, width))
    report = load_backbone(model, weights) if weights not in ("none", "imagenet") else None
    return model, report


def stochastic_depth(arch: str, drop_path: float | None) -> dict[str, float]:
    """torchvision's keyword for a stochastic depth rate: ConvNeXt's and EfficientNet's `stochastic_depth_prob`
    (their own defaults, 0.1-0.5 and 0.2, when None); a ResNet has none, so only 0 or None suit it."""
    if drop_path is None:
        return {}
    if arch.startswith(("convnext", "efficientnet")):
        return {"stochastic_depth_prob": drop_path}
    if drop_path:
        raise timm_backbones.ArchError(
            f"--drop-path: torchvision's {arch} has no stochastic depth: leave --drop-path out, or use a ConvNeXt, "
            "an EfficientNet or a timm model (timm:resnet50 has it)"
        )
    return {}


def load_backbone(model: nn.Module, weights: str) -> foreign.LoadReport:
    """Load what fits of a weights file (sightx.models.foreign: SightX, timm, torchvision, MAE/RETFound), tensors only;
    `hf-hub:ORG/NAME` is first fetched into, or found in, huggingface_hub's cache (sightx.models.hub_weights)."""
    try:
        if not hub_weights.is_hub(weights):
            return foreign.load_foreign(model, Path(weights))
        path = hub_weights.download(weights)
        return dataclasses.replace(foreign.load_foreign(model, path), path=weights, resolved=hub_weights.resolved(path))
    except foreign.ForeignWeightsError as e:
        raise WeightsError(str(e)) from None


class DeviceError(SightXError):
    """A device that does not exist here; reported as one line."""


def pick_device(name: str = "auto") -> torch.device:
    """auto: Apple MPS, then CUDA, then CPU."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
        available = {
            "cpu": True,
            "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
            "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        }
        if not available.get(device.type, False):
            raise DeviceError(f"device {name!r} is not available on this machine")
        return device
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def autocast_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """Mixed precision where it pays: bf16/fp16 on CUDA, fp16 on MPS; off on CPU unless asked."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """The autocast context for `autocast_dtype`'s choice; a no-op when it chose none."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
