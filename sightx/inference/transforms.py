"""What the model sees at evaluation: the stored image resized, as a uint8 tensor, normalised on the
device. Validation, predict and serve share it; training's augmentation (sightx.train.augment) builds on it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sightx.image.fundus import resize
from sightx.image.normalization import IMAGENET, Normalization


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HWC -> uint8 CHW tensor, a view (channels-last in memory): batching copies it once
    into the batch anyway, and the model runs channels-last."""
    return torch.from_numpy(img).permute(2, 0, 1)


def normalize_batch(images: torch.Tensor, device: torch.device, channels_last: bool, norm: Normalization = IMAGENET) -> torch.Tensor:
    """uint8 NCHW on the host -> normalised float32 on the device: training and grading alike."""
    x = images.to(device, non_blocking=True).float().div_(255)
    mean = torch.tensor(norm.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(norm.std, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@dataclass(frozen=True)
class EvalTransform:
    """Validation and prediction: resize only, so the model sees the stored image."""

    size: int

    def __call__(self, img: np.ndarray) -> torch.Tensor:
        return to_tensor(resize(img, self.size))
