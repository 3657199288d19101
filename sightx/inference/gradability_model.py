"""The learned gradability score: a quality classifier (sightx-train --task gradability) scoring photos.

The model is a SightX checkpoint of task "gradability": three classes, EyeQ's Good / Usable / Reject.
Its score is 1 - P(Reject) in [0, 1], 1 = gradable: Usable photos count as gradable, as a grader would
read them. It scores the stored field of view exactly as the preprocessing path makes it (a shard's
`.jpg`, or `Photo.jpeg` from sightx.inference.grader), so it must have been trained on shards made with the same
preprocessing options as the photos it scores; `check_preprocess` refuses a mismatch with one line.

`score` is the one hook predict and serve call (a batch of preprocessed fields in, scores out), so it
sits beside the rules-based score without either knowing about the other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sightx.contracts import sample
from sightx.errors import SightXError
from sightx.image.preprocess import PreprocessOptions
from sightx.inference.grader import Grader
from sightx.labels.kinds import REJECT


class GradabilityModelError(SightXError):
    """A gradability model that cannot score these photos (preprocessing made with other options)."""


class GradabilityModel:
    """A loaded quality classifier. `score*` runs the model: one thread per instance, as Grader.outputs."""

    def __init__(self, checkpoint: Path, device: str = "auto") -> None:
        self.grader = Grader(checkpoint, device, task="gradability")
        self.path = checkpoint

    @property
    def preprocess(self) -> PreprocessOptions:
        """The preprocessing of the shards it was trained on: the only input it may score."""
        return self.grader.preprocess

    @property
    def sha256(self) -> str:
        return self.grader.sha256

    def check_preprocess(self, opts: PreprocessOptions, what: str) -> None:
        """GradabilityModelError unless photos preprocessed with `opts` (those of `what`) are what it was trained on."""
        mine, theirs = self.preprocess.to_dict(), opts.to_dict()
        if mine != theirs:
            changed = ", ".join(f"{k} {mine.get(k)!r} vs {theirs.get(k)!r}" for k in sorted(mine) if mine.get(k) != theirs.get(k))
            raise GradabilityModelError(
                f"{self.path} was trained on shards preprocessed otherwise than {what} ({changed}): "
                "shard the quality-labelled photos with the same sightx-shard options and retrain it"
            )

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        """(N, 3) P(Good, Usable, Reject) for stored fields as RGB uint8 arrays (as `sample.decode_sample` gives)."""
        tensors: list[torch.Tensor] = [self.grader.transform(image) for image in images]
        return np.asarray(self.grader.outputs(tensors), np.float64).reshape(len(images), -1)

    def score(self, images: list[np.ndarray]) -> np.ndarray:
        """1 - P(Reject) per image, in [0, 1] (1 = gradable)."""
        if not images:
            return np.zeros(0)
        return np.clip(1.0 - self.probabilities(images)[:, REJECT], 0.0, 1.0)

    def score_jpegs(self, jpegs: list[bytes]) -> np.ndarray:
        """`score` for stored fields as their JPEG bytes (a shard's `.jpg`, `Photo.jpeg`); CodecError for a bad one."""
        return self.score([sample.decode_sample(j) for j in jpegs])


def load(path: Path, device: str = "auto") -> GradabilityModel:
    """The gradability model in checkpoint `path`; CheckpointError (one line) for a DR grader or a foreign file."""
    return GradabilityModel(path, device)
