"""Model heads: what the network's last layer means. A new head is one class here.

A head owns its width, its training loss, how raw outputs become per-image numbers (probabilities or a
score), how those become grades and a referable-DR score, and what validation tunes (regression
thresholds). Training, evaluation, prediction and serving ask the head instead of switching on a name.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from sightx.evaluation import metrics
from sightx.labels.grades import NUM_GRADES, REFERABLE
from sightx.labels.kinds import GRADE, QUALITY, QUALITY_NAMES, REJECT


class Head:
    name: ClassVar[str]
    width: ClassVar[int]  # outputs of the final layer
    labels: ClassVar[str] = GRADE  # the label kind it learns (sightx.labels.kinds)

    def per_sample_loss(self, out: torch.Tensor, grades: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, out: torch.Tensor, grades: torch.Tensor, weights: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        """Per-sample weighted mean, in float32 whatever the autocast dtype; `smoothing` is a classifier's label smoothing."""
        return (self.per_sample_loss(out.float(), grades, smoothing) * weights).sum() / weights.sum()

    def activate(self, out: torch.Tensor) -> torch.Tensor:
        """Raw network output -> per-image outputs: (N, 5) probabilities or (N,) scores."""
        raise NotImplementedError

    def grades(self, outputs: np.ndarray, thresholds: list[float]) -> np.ndarray:
        raise NotImplementedError

    def referable_score(self, outputs: np.ndarray) -> np.ndarray:
        """A score that ranks images by referable DR (grade >= 2), for AUC and the referable call."""
        raise NotImplementedError

    def val_loss(self, outputs: np.ndarray, grades: np.ndarray) -> float:
        raise NotImplementedError

    def tune_thresholds(self, outputs: np.ndarray, grades: np.ndarray) -> list[float] | None:
        """Thresholds fitted on validation outputs, or None when the head has none to fit."""
        return None

    def empty(self) -> np.ndarray:
        """Outputs for no images, shaped like `activate`'s."""
        return np.zeros((0, self.width) if self.width > 1 else (0,), np.float32)

    def selection(self, val: dict) -> float:
        """The validation number best.pt is chosen by: quadratic kappa for DR."""
        return float(val["kappa"])


class Classify(Head):
    """Five-way softmax with cross-entropy."""

    name = "classify"
    width = NUM_GRADES

    def per_sample_loss(self, out: torch.Tensor, grades: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        return F.cross_entropy(out, grades, reduction="none", label_smoothing=smoothing)

    def activate(self, out: torch.Tensor) -> torch.Tensor:
        return out.float().softmax(1)

    def grades(self, outputs: np.ndarray, thresholds: list[float]) -> np.ndarray:
        return np.asarray(outputs).argmax(1)

    def referable_score(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(outputs)[:, REFERABLE:].sum(1)

    def val_loss(self, outputs: np.ndarray, grades: np.ndarray) -> float:
        picked = outputs[np.arange(len(grades)), grades] if len(grades) else np.ones(0)
        return float(-np.log(np.clip(picked, 1e-7, 1)).mean()) if len(grades) else 0.0


class Regress(Head):
    """One score with squared error on the grade; grades by thresholds fitted for kappa (Kaggle 2015)."""

    name = "regress"
    width = 1

    def per_sample_loss(self, out: torch.Tensor, grades: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        return F.mse_loss(out.squeeze(1), grades.float(), reduction="none")  # no classes to smooth: config refuses it

    def activate(self, out: torch.Tensor) -> torch.Tensor:
        return out.float().squeeze(1)

    def grades(self, outputs: np.ndarray, thresholds: list[float]) -> np.ndarray:
        return metrics.apply_thresholds(outputs, thresholds)

    def referable_score(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(outputs)

    def val_loss(self, outputs: np.ndarray, grades: np.ndarray) -> float:
        return float(((outputs - grades) ** 2).mean()) if len(grades) else 0.0

    def tune_thresholds(self, outputs: np.ndarray, grades: np.ndarray) -> list[float] | None:
        return [float(t) for t in metrics.optimize_thresholds(outputs, grades)]


class Quality(Classify):
    """Three-way softmax over EyeQ's quality classes (Good, Usable, Reject), cross-entropy.

    Three classes rather than Reject-vs-rest: Usable photos (readable despite blur, haze or uneven light)
    are what a binary model confuses most, and keeping them apart costs nothing; the learned
    gradability score is 1 - P(Reject), so Usable counts as gradable, as a grader would read it.
    """

    name = "quality"
    width = len(QUALITY_NAMES)
    labels = QUALITY

    def referable_score(self, outputs: np.ndarray) -> np.ndarray:
        """P(Reject): what ranks photos as ungradable."""
        return np.asarray(outputs)[:, REJECT]

    def selection(self, val: dict) -> float:
        """Reject AUC (undefined without both kinds in validation: then accuracy)."""
        auc = val["reject"]["auc"]
        return float(val["accuracy"] if auc is None else auc)


HEADS: dict[str, Head] = {h.name: h for h in (Classify(), Regress(), Quality())}
# The heads a DR grader can be trained with (--head); the quality head is --task gradability's.
GRADE_HEADS = ("classify", "regress")


def get(name: str) -> Head:
    try:
        return HEADS[name]
    except KeyError:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, not {name!r}") from None
