"""An export checked against PyTorch: the head's outputs (probabilities, or the regression score) of the
checkpoint's own model, eager and unchanged, against the exported one on the same inputs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from sightx.inference.grader import Grader

TOLERANCE = 1e-4  # largest difference of a probability (or score) an export may show


def head_outputs(grader: Grader, run: Callable[[torch.Tensor], torch.Tensor], inputs: list[torch.Tensor]) -> list[np.ndarray]:
    """The head's per-image outputs of `run` (raw network outputs) for each input batch."""
    with torch.inference_mode():
        return [grader.head.activate(run(x)).cpu().numpy() for x in inputs]


def max_difference(reference: list[np.ndarray], other: list[np.ndarray]) -> float:
    return max((float(np.abs(a - b).max()) for a, b in zip(reference, other) if a.size), default=0.0)


def grades(grader: Grader, outputs: list[np.ndarray]) -> np.ndarray:
    if not outputs:
        return np.zeros(0, int)
    return np.asarray(grader.head.grades(np.concatenate(outputs), grader.thresholds))
