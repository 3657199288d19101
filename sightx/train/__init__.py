"""Training: config, the loop's free functions, the run folder, distributed set-up and the wiring.

`train` and the config are re-exported lazily: importing sightx.train.config (the CLI does, for
its defaults) must not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainConfig", "TrainError", "train"]


def __getattr__(name: str) -> Any:
    if name in ("TrainConfig", "TrainError"):
        from sightx.train import config

        return getattr(config, name)
    if name == "train":
        from sightx.train.trainer import train

        return train
    raise AttributeError(f"module 'sightx.train' has no attribute {name!r}")
