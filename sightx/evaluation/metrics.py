"""Metrics for 5-grade diabetic-retinopathy grading, and for image-quality classes (pure numpy).

Grades are ordinal (0 none .. 4 proliferative) and ~73% of EyePACS is grade 0,
so plain accuracy flatters a model that ignores disease.  The headline metric is
quadratic weighted kappa (QWK), always reported beside the constant-prediction
baseline and the clinically relevant "referable DR" (grade >= 2) operating point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from sightx.labels.grades import NUM_GRADES, REFERABLE
from sightx.labels.kinds import QUALITY_NAMES, REJECT

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.5, 1.5, 2.5, 3.5)


def _labels(y: ArrayLike, n: int, name: str) -> np.ndarray:
    """Validate grade labels, because np.bincount would silently grow on bad ones."""
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer grades, got dtype {a.dtype}")
    if a.min() < 0 or a.max() >= n:
        raise ValueError(f"{name} has grades outside 0..{n - 1}")
    return a.astype(np.int64)


def _pair(y_true: ArrayLike, y_pred: ArrayLike, n: int) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true, n, "y_true"), _labels(y_pred, n, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} samples but y_pred has {p.size}")
    return t, p


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, n: int = NUM_GRADES) -> np.ndarray:
    """Counts[true, pred] over all n grades, so absent grades still get a row/column."""
    t, p = _pair(y_true, y_pred, n)
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n).astype(np.int64)


def _quadratic_weights(n: int) -> np.ndarray:
    g = np.arange(n, dtype=np.float64)
    return (g[:, None] - g[None, :]) ** 2


def _kappa_from_confusion(cm: np.ndarray) -> float:
    """1 - observed/expected quadratic disagreement; 0.0 when nothing is expected to disagree."""
    w = _quadratic_weights(cm.shape[0])
    total = cm.sum()
    expected = float(cm.sum(axis=1) @ w @ cm.sum(axis=0)) / total
    if expected == 0.0:
        return 0.0
    return 1.0 - float((w * cm).sum()) / expected


def quadratic_weighted_kappa(y_true: ArrayLike, y_pred: ArrayLike, n: int = NUM_GRADES) -> float:
    """Cohen's kappa with quadratic weights: penalises 0-vs-4 far more than 0-vs-1.

    Defined as 0.0 when expected disagreement is zero (e.g. labels and predictions
    all one grade), where the textbook formula divides by zero.
    """
    return _kappa_from_confusion(confusion_matrix(y_true, y_pred, n))


def kappa_is_defined(y_true: ArrayLike, y_pred: ArrayLike, n: int = NUM_GRADES) -> bool:
    """Whether QWK is defined: some disagreement is expected by chance, i.e. truth and predictions
    are not all one and the same grade (where `quadratic_weighted_kappa` says 0.0 by convention)."""
    cm = confusion_matrix(y_true, y_pred, n)
    return float(cm.sum(axis=1) @ _quadratic_weights(n) @ cm.sum(axis=0)) > 0


def per_grade_recall(cm: np.ndarray) -> list[float | None]:
    """Recall of each true grade (None if the grade is absent), exposing grades a model ignores."""
    cm = np.asarray(cm)
    support = cm.sum(axis=1)
    return [float(cm[g, g] / support[g]) if support[g] else None for g in range(cm.shape[0])]


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their mean rank, as the Mann-Whitney statistic needs."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], xs.size]
    group_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def roc_auc(is_positive: ArrayLike, score: ArrayLike) -> float | None:
    """ROC AUC as P(score_pos > score_neg) + 0.5 P(tie); None if one class is missing."""
    pos = np.asarray(is_positive, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    if s.shape != pos.shape:
        raise ValueError(f"score has shape {s.shape}, labels have {pos.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("score contains NaN or inf")
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = _average_ranks(s)[pos].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def referable_metrics(y_true: ArrayLike, y_pred: ArrayLike, referable_score: ArrayLike | None = None) -> dict[str, float | None]:
    """Sensitivity/specificity for referable DR (grade >= 2) at the predicted grades, plus AUC.

    Screening cares about "refer or not" more than the exact grade.  The hard
    decision is the predicted grade; `referable_score` (e.g. P(grade >= 2) or a
    regression output) gives the threshold-free AUC.  Undefined values are None.
    """
    t, p = _pair(y_true, y_pred, NUM_GRADES)
    ref_true, ref_pred = t >= REFERABLE, p >= REFERABLE
    n_ref = int(ref_true.sum())
    n_non = t.size - n_ref
    auc = None if referable_score is None else roc_auc(ref_true, referable_score)
    return {
        "sensitivity": float((ref_pred & ref_true).sum() / n_ref) if n_ref else None,
        "specificity": float((~ref_pred & ~ref_true).sum() / n_non) if n_non else None,
        "auc": auc,
    }


def majority_baseline(y_true: ArrayLike) -> dict[str, float | int]:
    """Scores of always predicting the most common grade (grade 0 on EyePACS).

    Shown beside every model so a 73% accuracy is read as "no better than
    constant"; its kappa is 0 by construction.
    """
    t = _labels(y_true, NUM_GRADES, "y_true")
    grade = int(np.bincount(t, minlength=NUM_GRADES).argmax())
    const = np.full_like(t, grade)
    return {
        "grade": grade,
        "accuracy": float((t == grade).mean()),
        "kappa": quadratic_weighted_kappa(t, const),
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def evaluate(y_true: ArrayLike, y_pred: ArrayLike, referable_score: ArrayLike | None = None) -> dict:
    """All metrics in one JSON-serialisable dict (plain Python types, floats to 4 decimals)."""
    t, p = _pair(y_true, y_pred, NUM_GRADES)
    cm = confusion_matrix(t, p)
    ref = referable_metrics(t, p, referable_score)
    base = majority_baseline(t)
    return {
        "n": int(t.size),
        "accuracy": _round((t == p).mean()),
        "kappa": _round(_kappa_from_confusion(cm)),
        "confusion": cm.tolist(),
        "per_grade_recall": [_round(r) for r in per_grade_recall(cm)],
        "referable": {k: _round(v) for k, v in ref.items()},
        "baseline": {
            "grade": base["grade"],
            "accuracy": _round(base["accuracy"]),
            "kappa": _round(base["kappa"]),
        },
    }


def quality_evaluate(y_true: ArrayLike, probabilities: ArrayLike) -> dict:
    """Metrics for image-quality classes (EyeQ's 0 Good, 1 Usable, 2 Reject) from per-class probabilities.

    The end-point is Reject: a photo a grader cannot read must be set aside, so Reject AUC on P(Reject)
    (threshold-free, what MCF-Net reports on EyeQ: 0.98) leads, with Reject sensitivity and specificity at
    the predicted class; accuracy and QWK (the classes are ordered) sit beside the always-majority baseline.
    """
    probs = np.asarray(probabilities, np.float64)
    n = len(QUALITY_NAMES)
    if probs.ndim != 2 or probs.shape[1] != n:
        raise ValueError(f"probabilities must be (N, {n}), got shape {probs.shape}")
    t = _labels(y_true, n, "y_true")
    p = probs.argmax(1)
    cm = confusion_matrix(t, p, n)
    is_reject, called_reject = t == REJECT, p == REJECT
    n_rej, n_ok = int(is_reject.sum()), int((~is_reject).sum())
    majority = int(np.bincount(t, minlength=n).argmax())
    return {
        "n": int(t.size),
        "accuracy": _round((t == p).mean()),
        "kappa": _round(_kappa_from_confusion(cm)),
        "confusion": cm.tolist(),
        "per_grade_recall": [_round(r) for r in per_grade_recall(cm)],  # per quality class, under the shared key
        "reject": {
            "auc": _round(roc_auc(is_reject, probs[:, REJECT])),
            "sensitivity": _round((called_reject & is_reject).sum() / n_rej) if n_rej else None,
            "specificity": _round((~called_reject & ~is_reject).sum() / n_ok) if n_ok else None,
        },
        "baseline": {"grade": majority, "accuracy": _round((t == majority).mean()), "kappa": 0.0},
    }


def format_quality_report(metrics: dict) -> str:
    """Compact text block of a `quality_evaluate()` dict."""
    base, rej, cm = metrics["baseline"], metrics["reject"], metrics["confusion"]
    recall = "  ".join(f"{QUALITY_NAMES[c]}:{_fmt(r, 3)}" for c, r in enumerate(metrics["per_grade_recall"]))
    rows = [f"{QUALITY_NAMES[c]:>9}" + "".join(f"{v:>8}" for v in row) for c, row in enumerate(cm)]
    return "\n".join(
        [
            f"n={metrics['n']}  Reject AUC {_fmt(rej['auc'])}  "
            f"sensitivity {_fmt(rej['sensitivity'])}  specificity {_fmt(rej['specificity'])}",
            f"accuracy {_fmt(metrics['accuracy'])}  QWK {_fmt(metrics['kappa'])}  "
            f"(always-{QUALITY_NAMES[base['grade']]} baseline: accuracy {_fmt(base['accuracy'])})",
            f"per-class recall  {recall}",
            "confusion (rows = true class, columns = predicted class):",
            "true\\pred" + "".join(f"{name:>8}" for name in QUALITY_NAMES),
            *rows,
        ]
    )


def _sorted_thresholds(thresholds: Sequence[float]) -> np.ndarray:
    th = np.asarray(thresholds, dtype=np.float64)
    if th.ndim != 1 or np.any(np.diff(th) < 0):
        raise ValueError(f"thresholds must be a sorted 1-D sequence, got {thresholds!r}")
    return th


def apply_thresholds(scores: ArrayLike, thresholds: Sequence[float]) -> np.ndarray:
    """Grade = number of thresholds <= score; turns a regression output into grades."""
    th = _sorted_thresholds(thresholds)
    s = np.asarray(scores, dtype=np.float64)
    return np.searchsorted(th, s, side="right").astype(np.int64)


def optimize_thresholds(
    scores: ArrayLike,
    y_true: ArrayLike,
    init: Sequence[float] = DEFAULT_THRESHOLDS,
    iters: int = 20,
) -> tuple[float, ...]:
    """Cut points maximising QWK on a validation set, for a regression head.

    A regression output is rarely calibrated to grade units, so fixed x.5 cuts
    waste kappa.  Coordinate descent: each threshold in turn is moved to the best
    cut between neighbouring sorted scores while staying between its neighbours;
    every candidate's kappa is computed at once from cumulative label counts.
    Every move is a strict gain, so it terminates and never scores below `init`.
    """
    s_raw = np.asarray(scores, dtype=np.float64)
    t_raw = _labels(y_true, NUM_GRADES, "y_true")
    if s_raw.shape != t_raw.shape:
        raise ValueError(f"scores has shape {s_raw.shape}, y_true has {t_raw.shape}")
    if not np.all(np.isfinite(s_raw)):
        raise ValueError("scores contain NaN or inf")
    th = _sorted_thresholds(init).copy()
    if th.size != NUM_GRADES - 1:
        raise ValueError(f"need {NUM_GRADES - 1} thresholds, got {th.size}")

    order = np.argsort(s_raw, kind="stable")
    s, t = s_raw[order], t_raw[order]
    n, total = NUM_GRADES, s.size
    w = _quadratic_weights(n)
    onehot = np.eye(n)[t]
    v = np.bincount(t, minlength=n) @ w  # expected disagreement per predicted-grade count

    for _ in range(iters):
        moved = False
        for k in range(th.size):
            # Only samples in [lo, hi) can switch between grade k and k + 1.
            lo = th[k - 1] if k > 0 else -np.inf
            hi = th[k + 1] if k + 1 < th.size else np.inf
            a, b = np.searchsorted(s, lo, side="left"), np.searchsorted(s, hi, side="left")
            m = b - a
            if m == 0:
                continue
            pred = np.searchsorted(th, s, side="right")
            outside = np.r_[0:a, b:total]
            cm_out = np.bincount(t[outside] * n + pred[outside], minlength=n * n).reshape(n, n)

            sw = s[a:b]
            below = np.vstack([np.zeros(n), np.cumsum(onehot[a:b], axis=0)])  # (m+1, n)
            j = np.arange(m + 1)
            # A cut can fall at j only where it separates distinct scores.
            valid = np.r_[True, sw[1:] > sw[:-1], True]
            observed = (w * cm_out).sum() + below @ w[:, k] + (below[-1] - below) @ w[:, k + 1]
            expected = (v @ cm_out.sum(axis=0) + v[k] * j + v[k + 1] * (m - j)) / total
            with np.errstate(divide="ignore", invalid="ignore"):
                kappa = np.where(expected > 0, 1.0 - observed / expected, 0.0)
            kappa[~valid] = -np.inf

            current = int(np.searchsorted(sw, th[k], side="left"))
            best = int(np.argmax(kappa))
            if kappa[best] <= kappa[current] + 1e-12:
                continue
            if best == 0:
                th[k] = lo if np.isfinite(lo) else sw[0]
            elif best == m:
                th[k] = hi if np.isfinite(hi) else np.nextafter(sw[-1], np.inf)
            else:
                th[k] = (sw[best - 1] + sw[best]) / 2.0
            moved = True
        if not moved:
            break
    return tuple(float(x) for x in th)


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def format_report(metrics: dict) -> str:
    """Compact text block of an `evaluate()` dict, putting kappa beside the constant baseline."""
    base, ref, cm = metrics["baseline"], metrics["referable"], metrics["confusion"]
    recall = "  ".join(f"{g}:{_fmt(r, 3)}" for g, r in enumerate(metrics["per_grade_recall"]))
    width = max(5, len(str(max(max(row) for row in cm))) + 1)
    header = "true\\pred" + "".join(f"{g:>{width}}" for g in range(len(cm)))
    rows = [f"{g:>9}" + "".join(f"{c:>{width}}" for c in row) for g, row in enumerate(cm)]
    return "\n".join(
        [
            f"n={metrics['n']}  QWK {_fmt(metrics['kappa'])}",
            f"accuracy {_fmt(metrics['accuracy'])}  "
            f"(always-grade-{base['grade']} baseline: accuracy {_fmt(base['accuracy'])}, "
            f"QWK {_fmt(base['kappa'])})",
            f"per-grade recall  {recall}",
            f"referable (grade>={REFERABLE}): sensitivity {_fmt(ref['sensitivity'])}  "
            f"specificity {_fmt(ref['specificity'])}  AUC {_fmt(ref['auc'])}",
            "confusion (rows = true grade, columns = predicted grade):",
            header,
            *rows,
        ]
    )
