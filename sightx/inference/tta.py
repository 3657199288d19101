"""Test-time augmentation: a batch seen as several views whose head outputs are averaged.

A fundus photo has no preferred left-right or up-down orientation once the field is centred (left
and right eyes are mirror images; cameras flip), so flips show the model the same retina again;
rotations by 90 degrees add three more views. Outputs are averaged after the head's activation
(probabilities or scores), so a classifier's average is still a distribution.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

TTA_MODES = ("none", "flips", "flips+rot90")

View = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _rot90(k: int) -> View:
    def view(x: torch.Tensor) -> torch.Tensor:
        return torch.rot90(x, k, dims=(2, 3))

    return view


def views(mode: str) -> list[View]:
    """The views of an NCHW batch for `mode`: none (1), flips (identity, horizontal, vertical: 3),
    flips+rot90 (those and rotations by 90, 180 and 270 degrees: 6)."""
    if mode not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, not {mode!r}")
    out: list[View] = [_identity]
    if mode in ("flips", "flips+rot90"):
        out += [lambda x: torch.flip(x, dims=(3,)), lambda x: torch.flip(x, dims=(2,))]
    if mode == "flips+rot90":
        out += [_rot90(k) for k in (1, 2, 3)]
    return out


def averaged(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mode: str) -> torch.Tensor:
    """The mean of `run(view(x))` over the views of `mode` (`run` returns activated head outputs)."""
    vs = views(mode)
    total = run(vs[0](x)).float()
    for v in vs[1:]:
        total = total + run(v(x)).float()
    return total / len(vs)
