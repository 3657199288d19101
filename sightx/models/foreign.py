"""Weights from elsewhere (`--weights FILE`): a SightX checkpoint, a timm or torchvision state dict, or a
RETFound-style MAE checkpoint, read tensors-only and matched to the model by name and shape.

What it does to a foreign file: unwrap the state dict (`model`, `state_dict`, `module.` prefixes), drop
what a fine-tuned grader has no use for (an MAE's decoder and mask token, any classifier whose shape is
not SightX's head), map an MAE encoder's final `norm` to timm's `fc_norm` when the model pools globally
(as RETFound fine-tunes), and interpolate a ViT's position embedding to the model's grid. Every key is
accounted for in the returned report: loaded, missing (left as initialised) or ignored (with why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sightx.errors import SightXError

PREFIXES = ("module.", "backbone.", "encoder.", "model.")
DROPPED = ("decoder", "mask_token")  # an MAE's reconstruction half


class ForeignWeightsError(SightXError):
    """A weights file that cannot be read tensors-only or fits nothing of the model; one line."""


@dataclass
class LoadReport:
    path: str
    format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # the model's, left as initialised
    ignored: dict[str, str] = field(default_factory=dict)  # the file's key -> why
    interpolated: list[str] = field(default_factory=list)
    resolved: str = ""  # for a hub name: the cached FILE@COMMIT it was read from

    def summary(self) -> str:
        """One line for the console; the run folder's weights.json holds every key."""
        shown = ", ".join(self.missing[:4]) + (" ..." if len(self.missing) > 4 else "")
        extra = f"; position embedding interpolated ({', '.join(self.interpolated)})" if self.interpolated else ""
        origin = f", {self.resolved}" if self.resolved else ""
        return (
            f"--weights {self.path} ({self.format}{origin}): loaded {len(self.loaded)} tensors, {len(self.missing)} missing"
            f"{f' ({shown})' if self.missing else ''}, {len(self.ignored)} ignored{extra}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "loaded": self.loaded,
            "missing": self.missing,
            "ignored": self.ignored,
            "interpolated": self.interpolated,
            "resolved": self.resolved,
        }


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The file's tensors by name and what kind of file it was; never unpickles objects."""
    if not path.is_file():
        raise ForeignWeightsError(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ForeignWeightsError(f"{path}: reading .safetensors needs the safetensors package (pip install 'sightx[timm]')") from None
        return load_file(str(path)), "safetensors state dict"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or pickled-object files: refuse, never unpickle
        raise ForeignWeightsError(f"{path}: not a tensor-only weights file ({type(e).__name__})") from None
    if not isinstance(state, dict):
        raise ForeignWeightsError(f"{path}: not a state dict")
    kind = "state dict"
    if state.get("format") == "sightx-checkpoint":
        state, kind = state["model"], "SightX checkpoint"
    elif isinstance(state.get("model"), dict):
        state, kind = state["model"], "checkpoint with a 'model' key (MAE/RETFound, DeiT)"
    elif isinstance(state.get("state_dict"), dict):
        state, kind = state["state_dict"], "checkpoint with a 'state_dict' key"
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise ForeignWeightsError(f"{path}: holds no tensors")
    return tensors, kind


def _strip(key: str, own: dict[str, Any]) -> str:
    while key not in own and key.startswith(PREFIXES):
        key = key.split(".", 1)[1]
    return key


def resize_pos_embed(pos: torch.Tensor, target: torch.Size, prefix: int) -> torch.Tensor:
    """(1, prefix + g*g, D) -> (1, prefix + G*G, D): the grid part bicubically resized, prefix tokens kept."""
    extra, grid = pos[:, :prefix], pos[:, prefix:]
    old, new = math.isqrt(grid.shape[1]), math.isqrt(target[1] - prefix)
    if old * old != grid.shape[1] or new * new != target[1] - prefix:
        raise ForeignWeightsError(f"position embedding of {pos.shape[1]} tokens is not a square grid")
    g = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    g = F.interpolate(g, size=(new, new), mode="bicubic", align_corners=False)
    return torch.cat([extra, g.permute(0, 2, 3, 1).reshape(1, new * new, -1).to(pos.dtype)], dim=1)


def load_foreign(model: nn.Module, path: Path) -> LoadReport:
    """Load what fits of `path` into `model` (strict=False) and say what was loaded, missed and ignored."""
    state, kind = read_state(path)
    own = model.state_dict()
    report = LoadReport(str(path), kind)
    pooled = "fc_norm.weight" in own and "norm.weight" not in own
    usable: dict[str, torch.Tensor] = {}
    for raw, value in state.items():
        key = _strip(raw, own)
        if key.startswith(DROPPED):
            report.ignored[raw] = "MAE decoder"
            continue
        if pooled and key.startswith("norm."):
            key = "fc_" + key  # the MAE encoder's last norm is where a global-pool ViT keeps it
        if key not in own:
            report.ignored[raw] = "not in the model"
            continue
        if key == "pos_embed" and value.shape != own[key].shape and value.ndim == 3:
            value = resize_pos_embed(value, own[key].shape, int(getattr(model, "num_prefix_tokens", 1)))
            report.interpolated.append(f"{state[raw].shape[1]} -> {value.shape[1]} tokens")
        if value.shape != own[key].shape:
            report.ignored[raw] = f"shape {tuple(value.shape)}, the model's {tuple(own[key].shape)}"
            continue
        usable[key] = value
    if not usable:
        raise ForeignWeightsError(f"{path}: no tensors match {type(model).__name__}")
    model.load_state_dict(usable, strict=False)
    report.loaded = sorted(usable)
    report.missing = [k for k in own if k not in usable]
    return report
