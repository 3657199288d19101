"""Training: config, the loop's free functions, the run folder, distributed set-up and the wiring."""

from sightx.train.config import TrainConfig, TrainError
from sightx.train.trainer import train

__all__ = ["TrainConfig", "TrainError", "train"]
