"""Patient-level fusion of per-eye predictions (`sightx-evaluate --fuse-eyes`).

A patient is graded by the worse eye: the patient's true grade is the higher of the eyes' grades, the
predicted grade the higher of the eyes' predicted grades, the referable-DR score the higher of the eyes'
scores. Averaging the eyes' probabilities was the other choice, and it was rejected: screening refers a
patient when either eye has referable DR (the usual grading protocols grade the patient by the worse
eye), so the fused prediction must answer that question. Averaging halves a one-eyed finding (one eye
at 0.8 referable, the other at 0.1, averages to 0.45: not referred), which costs sensitivity exactly
where a screening programme needs it, and compares a mean against a truth that is a maximum.

For calibration and per-grade AUROC the patient's grade distribution is the distribution of the worse
eye's grade with the eyes taken as independent given the model: P(max <= g) = prod_e P_e(grade <= g).
Its referable probability, 1 - prod_e (1 - r_e), is at least the worse eye's, which is the score used.
A patient with one photo is that photo; one with more than two (repeat photos) takes the worst of all.
Patient ids come from each sample's metadata (sightx.labels.ids.patient_eye for Kaggle names).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Patients:
    """One row per patient, in order of first appearance."""

    ids: np.ndarray
    grades: np.ndarray  # the worse eye's true grade
    predicted: np.ndarray  # the worse eye's predicted grade
    referable_score: np.ndarray  # the worse eye's referable score
    probabilities: np.ndarray | None  # (P, 5) distribution of the worse eye's grade; None without class outputs
    photos: np.ndarray  # photos per patient


def fuse_eyes(
    patients: np.ndarray,
    grades: np.ndarray,
    predicted: np.ndarray,
    referable_score: np.ndarray,
    probabilities: np.ndarray | None = None,
) -> Patients:
    """Per-photo arrays grouped by patient, each patient by the worse eye (see the module docstring)."""
    pid = np.asarray(patients)
    _, first, inverse = np.unique(pid, return_index=True, return_inverse=True)
    order = np.argsort(first)  # patients in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    group = rank[inverse.ravel()]
    n = order.size

    def worst(values: np.ndarray, dtype: type) -> np.ndarray:
        out = np.full(n, -np.inf)
        np.maximum.at(out, group, np.asarray(values, dtype=np.float64))
        return out.astype(dtype)

    probs = None
    if probabilities is not None:
        p = np.asarray(probabilities, dtype=np.float64)
        log_cdf = np.log(np.clip(np.cumsum(p, axis=1), 1e-300, 1.0))
        cdf = np.zeros((n, p.shape[1]))
        np.add.at(cdf, group, log_cdf)
        cdf = np.exp(cdf)
        cdf[:, -1] = 1.0
        probs = np.diff(cdf, axis=1, prepend=0.0).clip(0.0, 1.0)
        probs /= probs.sum(axis=1, keepdims=True)
    return Patients(
        ids=pid[first[order]],
        grades=worst(grades, np.int64),
        predicted=worst(predicted, np.int64),
        referable_score=worst(referable_score, np.float64),
        probabilities=probs,
        photos=np.bincount(group, minlength=n),
    )
