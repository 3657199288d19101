"""Models and devices: torchvision ResNets with a DR head; weights only from local files."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from sightx import heads
from sightx.errors import SightXError

ARCHS = ("resnet18", "resnet34", "resnet50")
_IMAGENET = {
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": torchvision.models.ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V2,
}


class WeightsError(SightXError):
    """Requested weights are not on this machine; nothing is ever downloaded."""


def imagenet_weights_path(arch: str) -> Path:
    """Where torchvision keeps (and we only look for) the ImageNet checkpoint of `arch`."""
    filename = os.path.basename(_IMAGENET[arch].url)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def build_model(arch: str, head: str, weights: str = "none") -> nn.Module:
    """A ResNet whose last layer is the head's width; `weights` is none, imagenet or a path."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, not {arch!r}")
    width = heads.get(head).width
    model = getattr(torchvision.models, arch)(weights=None)
    if weights == "imagenet":
        path = imagenet_weights_path(arch)
        if not path.is_file():
            raise WeightsError(
                f"ImageNet weights for {arch} are not in the local torch cache ({path}); "
                "copy the file there, pass --weights PATH, or use --weights none"
            )
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.fc = nn.Linear(model.fc.in_features, width)
    if weights not in ("none", "imagenet"):
        load_backbone(model, Path(weights))
    return model


def load_backbone(model: nn.Module, path: Path) -> None:
    """Load a state dict (or a SightX checkpoint's model) from a local file, tensors only."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or pickled-object files: refuse, never unpickle
        raise WeightsError(f"{path}: not a tensor-only weights file ({type(e).__name__})") from None
    state = state.get("model", state)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise WeightsError(f"{path}: no tensors match {type(model).__name__}")
    model.load_state_dict(usable, strict=False)


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
