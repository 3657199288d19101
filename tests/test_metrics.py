"""Tests for sightx.evaluation.metrics, checked against scikit-learn and hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from sightx.evaluation import metrics as M

LABELS = list(range(M.NUM_GRADES))
EYEPACS_PRIOR = np.array([0.73, 0.07, 0.15, 0.025, 0.025])


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random labels/predictions with varied, sometimes very imbalanced, distributions."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    kind = seed % 4
    if kind == 0:
        p_true = rng.dirichlet(np.ones(5))
    elif kind == 1:
        p_true = EYEPACS_PRIOR
    else:
        p_true = rng.dirichlet(np.full(5, 0.2))  # spiky: often only 1-2 grades present
    y_true = rng.choice(5, size=n, p=p_true)
    if kind == 3:  # noisy ordinal predictions correlated with the truth
        y_pred = np.clip(y_true + rng.integers(-1, 2, size=n), 0, 4)
    else:
        y_pred = rng.choice(5, size=n, p=rng.dirichlet(np.ones(5)))
    return y_true, y_pred


@pytest.mark.parametrize("seed", range(50))
def test_kappa_matches_sklearn(seed: int) -> None:
    y_true, y_pred = _random_case(seed)
    expected = cohen_kappa_score(y_true, y_pred, weights="quadratic", labels=LABELS)
    if np.isnan(expected):  # sklearn's undefined case is our defined 0.0
        expected = 0.0
    assert M.quadratic_weighted_kappa(y_true, y_pred) == pytest.approx(expected, abs=1e-12)


def test_kappa_hand_computed() -> None:
    # O: (0,0) (1,2) (2,2) -> observed weighted disagreement 1.
    # Row sums r=[1,1,1,0,0], column sums c=[1,0,2,0,0], N=3:
    # expected = sum r_i c_j (i-j)^2 / N = (8 + 3 + 4) / 3 = 5  ->  kappa = 1 - 1/5.
    assert M.quadratic_weighted_kappa([0, 1, 2], [0, 2, 2]) == pytest.approx(0.8)


def test_kappa_perfect_agreement_is_one() -> None:
    y = np.array([0, 0, 1, 2, 3, 4, 4, 0])
    assert M.quadratic_weighted_kappa(y, y) == 1.0


def test_kappa_degenerate_is_zero() -> None:
    y = np.zeros(10, dtype=int)
    assert M.quadratic_weighted_kappa(y, y) == 0.0
    assert M.quadratic_weighted_kappa(np.full(4, 3), np.full(4, 3)) == 0.0


def test_kappa_penalises_distant_errors_more() -> None:
    y_true = np.array([0, 1, 2, 3, 4] * 4)
    near = np.clip(y_true + 1, 0, 4)
    far = (y_true + 3) % 5
    assert M.quadratic_weighted_kappa(y_true, near) > M.quadratic_weighted_kappa(y_true, far)


def test_kappa_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        M.quadratic_weighted_kappa([0, 5], [0, 1])
    with pytest.raises(ValueError):
        M.quadratic_weighted_kappa([0, 1, 2], [0, 1])
    with pytest.raises(ValueError):
        M.quadratic_weighted_kappa([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError):
        M.quadratic_weighted_kappa([], [])


@pytest.mark.parametrize("seed", range(10))
def test_confusion_matrix_matches_sklearn(seed: int) -> None:
    y_true, y_pred = _random_case(seed)
    cm = M.confusion_matrix(y_true, y_pred)
    assert cm.dtype == np.int64
    assert cm.shape == (5, 5)
    np.testing.assert_array_equal(cm, sk_confusion_matrix(y_true, y_pred, labels=LABELS))


def test_per_grade_recall() -> None:
    cm = M.confusion_matrix([0, 0, 0, 1, 1, 4], [0, 0, 1, 1, 0, 2])
    assert M.per_grade_recall(cm) == [pytest.approx(2 / 3), 0.5, None, None, 0.0]


@pytest.mark.parametrize("seed", range(10))
def test_auc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(5, 300))
    y = rng.integers(0, 5, size=n)
    y[:2] = [0, 4]  # both classes present
    # Coarse scores force many ties; a weak signal keeps AUC away from 0.5.
    score = np.round(0.3 * (y >= 2) + rng.random(n), decimals=int(seed % 3))
    ours = M.referable_metrics(y, y, score)["auc"]
    assert ours == pytest.approx(roc_auc_score(y >= 2, score), abs=1e-12)


def test_auc_all_tied_is_half_and_one_class_is_none() -> None:
    assert M.roc_auc([True, False, True, False], [0.3] * 4) == 0.5
    assert M.roc_auc([False, False], [0.1, 0.2]) is None
    assert M.roc_auc([True, False], [0.9, 0.1]) == 1.0


def test_referable_sensitivity_specificity_hand_made() -> None:
    # Referable truth: grades 2,3,4,2 (4 positives); 0,1,0,1,0,0 (6 negatives).
    y_true = [2, 3, 4, 2, 0, 1, 0, 1, 0, 0]
    y_pred = [2, 1, 4, 3, 0, 2, 0, 1, 4, 0]
    # Positives caught: 2->2, 4->4, 2->3 = 3/4 (3->1 missed).
    # Negatives cleared: all but 1->2 and 0->4 = 4/6.
    r = M.referable_metrics(y_true, y_pred)
    assert r["sensitivity"] == 0.75
    assert r["specificity"] == pytest.approx(4 / 6)
    assert r["auc"] is None


def test_referable_undefined_when_no_positives() -> None:
    r = M.referable_metrics([0, 1, 0], [0, 2, 0], [0.1, 0.9, 0.2])
    assert r["sensitivity"] is None
    assert r["specificity"] == pytest.approx(2 / 3)
    assert r["auc"] is None


def test_majority_baseline_on_eyepacs_like_labels() -> None:
    y = np.array([0] * 73 + [1] * 7 + [2] * 15 + [3] * 3 + [4] * 2)
    base = M.majority_baseline(y)
    assert base["grade"] == 0
    assert base["accuracy"] == pytest.approx(0.73)
    assert base["kappa"] == 0.0


def test_majority_baseline_uses_most_common_grade() -> None:
    base = M.majority_baseline([2, 2, 2, 0, 1])
    assert base["grade"] == 2
    assert base["accuracy"] == pytest.approx(0.6)


def test_evaluate_is_json_serialisable_and_consistent() -> None:
    rng = np.random.default_rng(7)
    y_true = rng.choice(5, size=500, p=EYEPACS_PRIOR)
    y_pred = np.clip(y_true + rng.integers(-1, 2, size=500), 0, 4)
    probs = rng.dirichlet(np.ones(5), size=500)
    result = M.evaluate(y_true, y_pred, probs[:, 2:].sum(axis=1))

    decoded = json.loads(json.dumps(result))
    assert decoded == result
    assert result["n"] == 500
    assert result["kappa"] == round(cohen_kappa_score(y_true, y_pred, weights="quadratic", labels=LABELS), 4)
    assert result["accuracy"] == round(float((y_true == y_pred).mean()), 4)
    assert result["confusion"] == sk_confusion_matrix(y_true, y_pred, labels=LABELS).tolist()
    assert set(result["referable"]) == {"sensitivity", "specificity", "auc"}
    assert result["referable"]["auc"] is not None
    assert result["baseline"]["kappa"] == 0.0
    assert result["baseline"]["accuracy"] == round(float((y_true == 0).mean()), 4)
    for value in (result["accuracy"], result["kappa"], *result["referable"].values()):
        assert type(value) is float
        assert value == round(value, 4)


def test_evaluate_without_score_has_no_auc() -> None:
    result = M.evaluate([0, 1, 2, 3, 4], [0, 1, 2, 3, 3])
    assert result["referable"]["auc"] is None
    json.dumps(result)


def test_format_report_contains_key_numbers() -> None:
    y_true = np.array([0] * 8 + [1, 2])
    y_pred = np.array([0] * 7 + [1, 1, 2])
    text = M.format_report(M.evaluate(y_true, y_pred, y_pred / 4))
    lines = text.splitlines()
    assert "QWK" in lines[0]
    assert "always-grade-0 baseline: accuracy 0.8000" in text
    assert "AUC" in text and "sensitivity 1.0000" in text
    assert "n/a" in text  # grades 3 and 4 have no samples
    assert lines[-5].split() == ["0", "7", "1", "0", "0", "0"]
    assert len(lines) == 6 + 5


def test_apply_thresholds_counts_thresholds_at_or_below() -> None:
    scores = np.array([-1.0, 0.49, 0.5, 1.2, 2.5, 3.49, 3.5, 9.0])
    np.testing.assert_array_equal(M.apply_thresholds(scores, M.DEFAULT_THRESHOLDS), [0, 0, 1, 1, 3, 3, 4, 4])
    np.testing.assert_array_equal(M.apply_thresholds(scores, M.DEFAULT_THRESHOLDS), np.digitize(scores, M.DEFAULT_THRESHOLDS))
    with pytest.raises(ValueError):
        M.apply_thresholds(scores, (1.5, 0.5, 2.5, 3.5))


def _biased_regression(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(5, size=n, p=EYEPACS_PRIOR)
    return y * 0.7 + rng.normal(0.0, 0.35, size=n), y


def test_optimize_thresholds_improves_biased_scores() -> None:
    scores, y = _biased_regression(0, 3000)
    default_kappa = M.quadratic_weighted_kappa(y, M.apply_thresholds(scores, M.DEFAULT_THRESHOLDS))
    th = M.optimize_thresholds(scores, y)
    tuned_kappa = M.quadratic_weighted_kappa(y, M.apply_thresholds(scores, th))

    assert len(th) == 4
    assert all(type(x) is float for x in th)
    assert list(th) == sorted(th)
    assert tuned_kappa > default_kappa + 0.01
    # At least as good as the "oracle" midway cuts for scores = grade * 0.7,
    # and it reaches the same cuts starting from there.
    oracle = (0.35, 1.05, 1.75, 2.45)
    assert tuned_kappa >= M.quadratic_weighted_kappa(y, M.apply_thresholds(scores, oracle))
    assert M.optimize_thresholds(scores, y, init=oracle) == pytest.approx(th)


def test_optimize_thresholds_never_worse_and_deterministic() -> None:
    scores, y = _biased_regression(1, 500)
    scores = np.round(scores, 1)  # heavy ties: cuts may only fall between distinct scores
    init = (0.3, 1.0, 1.8, 2.4)
    start = M.quadratic_weighted_kappa(y, M.apply_thresholds(scores, init))
    th = M.optimize_thresholds(scores, y, init=init)
    assert M.quadratic_weighted_kappa(y, M.apply_thresholds(scores, th)) >= start
    assert th == M.optimize_thresholds(scores, y, init=init)
    assert list(th) == sorted(th)


def test_optimize_thresholds_first_cut_matches_brute_force() -> None:
    # Binary labels, other cuts far above: the first coordinate step (which the
    # later steps cannot undo) must find the exhaustive best single cut.
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=60)
    scores = y + rng.normal(0, 0.8, size=60)
    rest = (50.0, 60.0, 70.0)
    th = M.optimize_thresholds(scores, y, init=(0.5, *rest), iters=1)
    s = np.sort(scores)
    cuts = np.r_[s[0], (s[1:] + s[:-1]) / 2, s[-1] + 1]
    best = max(M.quadratic_weighted_kappa(y, M.apply_thresholds(scores, (c, *rest))) for c in cuts)
    got = M.quadratic_weighted_kappa(y, M.apply_thresholds(scores, (th[0], *rest)))
    assert got == pytest.approx(best, abs=1e-12)
    assert got > M.quadratic_weighted_kappa(y, M.apply_thresholds(scores, (0.5, *rest)))


def test_optimize_thresholds_is_fast_on_10k() -> None:
    import time

    scores, y = _biased_regression(2, 10_000)
    t0 = time.perf_counter()
    M.optimize_thresholds(scores, y)
    assert time.perf_counter() - t0 < 5.0
