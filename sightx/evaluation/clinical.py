"""Clinical metrics of a DR grader on a labelled set (pure numpy): what sightx-evaluate reports.

Beside QWK (sightx.evaluation.metrics): unweighted kappa, ROC curves and AUROC for referable DR
(grade >= 2) and for each grade one-vs-rest, sensitivity at a fixed specificity and specificity at a
fixed sensitivity (the operating points screening programmes set), expected calibration error with
its reliability bins, and temperature scaling fitted by negative log-likelihood.

Confidence intervals come from a patient-level bootstrap (`bootstrap`): both eyes of a patient are
correlated, so patients, not photos, are resampled; the seed makes every interval reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from sightx.evaluation import metrics
from sightx.labels.grades import NUM_GRADES


def cohen_kappa(y_true: ArrayLike, y_pred: ArrayLike, n: int = NUM_GRADES) -> float:
    """Unweighted Cohen's kappa: every disagreement costs the same (0.0 where none is expected by chance)."""
    cm = metrics.confusion_matrix(y_true, y_pred, n).astype(np.float64)
    total = cm.sum()
    observed = np.trace(cm) / total
    expected = float(cm.sum(axis=1) @ cm.sum(axis=0)) / total**2
    return 0.0 if expected >= 1.0 else float((observed - expected) / (1.0 - expected))


def roc_curve(is_positive: ArrayLike, score: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, threshold) at every distinct score, highest first, from
    (0, 0) at +inf: calling positive every photo whose score >= threshold. Both classes must be present."""
    pos = np.asarray(is_positive, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    if s.shape != pos.shape or pos.ndim != 1:
        raise ValueError(f"score has shape {s.shape}, labels have {pos.shape}")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC curve needs positives and negatives")
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]  # the last index of each distinct score
    tp = np.cumsum(pos)[last]
    fp = (last + 1) - tp
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, s[last]]


def sensitivity_at_specificity(is_positive: ArrayLike, score: ArrayLike, specificity: float) -> float | None:
    """The highest sensitivity of any threshold whose specificity is at least `specificity`; None if one class is missing."""
    try:
        fpr, tpr, _ = roc_curve(is_positive, score)
    except ValueError:
        return None
    ok = (1.0 - fpr) >= specificity - 1e-12
    return float(tpr[ok].max())


def specificity_at_sensitivity(is_positive: ArrayLike, score: ArrayLike, sensitivity: float) -> float | None:
    """The highest specificity of any threshold whose sensitivity is at least `sensitivity`; None if one class is missing."""
    try:
        fpr, tpr, _ = roc_curve(is_positive, score)
    except ValueError:
        return None
    ok = tpr >= sensitivity - 1e-12
    return float((1.0 - fpr[ok]).max())


def one_vs_rest_auc(y_true: ArrayLike, probabilities: ArrayLike) -> list[float | None]:
    """AUROC of each grade against all others, on that grade's probability (None where a grade is absent)."""
    t = np.asarray(y_true)
    p = np.asarray(probabilities, dtype=np.float64)
    return [metrics.roc_auc(t == g, p[:, g]) for g in range(p.shape[1])]


def reliability(confidence: ArrayLike, correct: ArrayLike, bins: int = 15) -> dict[str, Any]:
    """Top-label calibration: equal-width confidence bins (right-closed, as Guo et al. 2017), each with its
    count, mean confidence and accuracy; `ece` is the count-weighted mean |accuracy - confidence|."""
    c = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if c.shape != ok.shape or c.ndim != 1 or c.size == 0:
        raise ValueError("confidence and correct must be equal-length, non-empty 1-D arrays")
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, c, side="left") - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=c, minlength=bins)
    acc_sum = np.bincount(idx, weights=ok, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, acc = conf_sum / count, acc_sum / count
    ece = float(np.sum(np.abs(acc_sum - conf_sum)) / c.size)
    return {
        "ece": ece,
        "edges": edges.tolist(),
        "count": count.tolist(),
        "confidence": [None if n == 0 else float(v) for n, v in zip(count, mean_conf)],
        "accuracy": [None if n == 0 else float(v) for n, v in zip(count, acc)],
    }


def expected_calibration_error(probabilities: ArrayLike, y_true: ArrayLike, bins: int = 15) -> float:
    """ECE of the predicted grade's probability (top-label), in equal-width bins."""
    p = np.asarray(probabilities, dtype=np.float64)
    t = np.asarray(y_true)
    return float(reliability(p.max(1), p.argmax(1) == t, bins)["ece"])


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def scale_probabilities(probabilities: ArrayLike, temperature: float) -> np.ndarray:
    """softmax(logits / T) from softmax(logits): log-probabilities are the logits up to a per-row constant."""
    logp = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0))
    return np.exp(_log_softmax(logp / temperature))


def nll(probabilities: ArrayLike, y_true: ArrayLike) -> float:
    """Mean negative log-likelihood of the true grades."""
    p = np.asarray(probabilities, dtype=np.float64)
    t = np.asarray(y_true, dtype=np.int64)
    return float(-np.log(np.clip(p[np.arange(t.size), t], 1e-12, 1.0)).mean())


def fit_temperature(probabilities: ArrayLike, y_true: ArrayLike, lo: float = 0.05, hi: float = 20.0) -> float:
    """The temperature T minimising NLL of softmax(logits / T) (Guo et al. 2017): golden-section search on
    log T (the NLL is convex in 1/T), to 1e-4 relative. T > 1 softens an over-confident model."""
    logp = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0))
    t = np.asarray(y_true, dtype=np.int64)
    rows = np.arange(t.size)

    def loss(log_t: float) -> float:
        return float(-_log_softmax(logp / np.exp(log_t))[rows, t].mean())

    a, b = np.log(lo), np.log(hi)
    g = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = loss(c), loss(d)
    while b - a > 1e-4:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = loss(d)
    return float(np.exp((a + b) / 2.0))


def bootstrap(
    statistic: Callable[[np.ndarray], float | None],
    patients: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Percentile CI of `statistic(indices)` over resamples of patients with replacement (each drawn patient
    brings all their photos). Resamples where the statistic is undefined (None: a class absent) are dropped
    and counted. Returns the estimate on all photos, `low`, `high` and the resamples used."""
    pid = np.asarray(patients)
    _, inverse = np.unique(pid, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(inverse.max() + 1)] if pid.size else []
    estimate = statistic(np.arange(pid.size))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        drawn = rng.integers(0, len(members), len(members))
        v = statistic(np.concatenate([members[k] for k in drawn]))
        if v is not None:
            values.append(v)
    alpha = (1.0 - level) / 2.0
    low, high = (None, None) if not values else (float(np.quantile(values, alpha)), float(np.quantile(values, 1.0 - alpha)))
    return {"estimate": None if estimate is None else float(estimate), "low": low, "high": high, "resamples": len(values)}
