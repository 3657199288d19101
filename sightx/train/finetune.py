"""Fine-tuning a pretrained backbone: a linear probe (`--freeze backbone`), layer-wise learning-rate
decay (`--layer-decay`, BEiT/MAE/RETFound) as optimiser parameter groups, and the weights' moving
average (`--ema`). Label smoothing, mixup and CutMix live in the loss and the step (sightx.train.loop).

Layers are counted from the input: parameters on the model itself (a ViT's class token and position
embedding) and its first child are layer 0, each element of a Sequential/ModuleList child (a ViT's
blocks, a ResNet stage's blocks, an EfficientNet's stages) is a layer of its own, the head the last. A
layer d steps below the head trains at lr * decay**d: the early, generic features move least.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sightx.models.factory import classifier

FREEZE_MODES = ("none", "backbone")


def freeze_backbone(model: nn.Module) -> int:
    """Only the classifier learns (a linear probe); returns how many parameters still train."""
    head = {id(p) for p in classifier(model).parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in head)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def layer_ids(model: nn.Module) -> dict[str, int]:
    """Parameter name -> layer index from the input (0) to the classifier (the last)."""
    head = {id(p) for p in classifier(model).parameters()}
    units: list[str] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential | nn.ModuleList) and len(child) > 1:
            units += [f"{name}.{i}" for i in range(len(child))]
        else:
            units.append(name)
    owners = {u: i for i, u in enumerate(units)}
    raw: dict[str, int] = {}
    for name, p in model.named_parameters():
        if id(p) in head:
            continue
        parts = name.split(".")
        raw[name] = owners.get(".".join(parts[:2]), owners.get(parts[0], 0)) if len(parts) > 1 else 0
    dense = {u: i for i, u in enumerate(sorted(set(raw.values())))}  # only layers that hold parameters count
    ids = {k: dense[v] for k, v in raw.items()}
    top = len(dense)
    ids.update({name: top for name, p in model.named_parameters() if id(p) in head})
    return ids


def param_groups(model: nn.Module, lr: float, layer_decay: float = 1.0) -> list[dict[str, Any]]:
    """The trainable parameters in groups of one learning rate each (one group without decay)."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if layer_decay == 1.0:
        return [{"params": [p for _, p in trainable], "lr": lr}]
    ids = layer_ids(model)
    top = max(ids.values())
    groups: dict[int, list[Any]] = {}
    for n, p in trainable:
        groups.setdefault(ids[n], []).append(p)
    return [{"params": ps, "lr": lr * layer_decay ** (top - i), "layer": i} for i, ps in sorted(groups.items())]


def ema_of(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of `model`'s weights and buffers (BatchNorm statistics too), updated by
    `update_parameters` after each step; its `module` is what validation grades and the checkpoint keeps."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
