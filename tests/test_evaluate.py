"""sightx-evaluate: its metrics against scikit-learn or hand-computed cases, the patient bootstrap's
coverage where the truth is known, temperature scaling, TTA, and the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn import metrics as sk

from sightx.evaluation import clinical, metrics
from sightx.evaluation.assess import _ci_text
from sightx.inference import tta


def _data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 5, n)
    logits = rng.normal(size=(n, 5)) + 2.0 * np.eye(5)[t]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return t, p, p.argmax(1)


def test_kappas_match_scikit_learn() -> None:
    t, _, pred = _data()
    assert clinical.cohen_kappa(t, pred) == pytest.approx(sk.cohen_kappa_score(t, pred))
    assert metrics.quadratic_weighted_kappa(t, pred) == pytest.approx(sk.cohen_kappa_score(t, pred, weights="quadratic"))


def test_aucs_and_roc_curve_match_scikit_learn() -> None:
    t, p, _ = _data()
    score = np.round(p[:, 2:].sum(1), 2)  # rounded: ties, which the curve must group
    ref = t >= 2
    assert metrics.roc_auc(ref, score) == pytest.approx(sk.roc_auc_score(ref, score))
    fpr, tpr, th = clinical.roc_curve(ref, score)
    want_fpr, want_tpr, want_th = sk.roc_curve(ref, score, drop_intermediate=False)
    np.testing.assert_allclose(fpr, want_fpr)
    np.testing.assert_allclose(tpr, want_tpr)
    np.testing.assert_allclose(th[1:], want_th[1:])
    ovr = clinical.one_vs_rest_auc(t, p)
    assert ovr == pytest.approx([sk.roc_auc_score(t == g, p[:, g]) for g in range(5)])


def test_operating_points_hand_computed() -> None:
    # scores of 4 negatives and 4 positives; thresholds give (specificity, sensitivity) pairs by hand
    pos = np.array([0, 0, 0, 0, 1, 1, 1, 1], bool)
    score = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    # specificity >= 0.75 allows calling >= 0.4 positive: sensitivity 1.0
    assert clinical.sensitivity_at_specificity(pos, score, 0.75) == 1.0
    # specificity 1.0 only at threshold 0.7: sensitivity 0.75
    assert clinical.sensitivity_at_specificity(pos, score, 0.95) == 0.75
    assert clinical.specificity_at_sensitivity(pos, score, 0.9) == 0.75
    assert clinical.specificity_at_sensitivity(pos, score, 0.75) == 1.0
    assert clinical.sensitivity_at_specificity(np.zeros(3, bool), np.arange(3.0), 0.9) is None


def test_operating_points_agree_with_a_scan_of_scikit_learns_curve() -> None:
    t, p, _ = _data(seed=3)
    ref, score = t >= 2, p[:, 2:].sum(1)
    fpr, tpr, _ = sk.roc_curve(ref, score)
    for level in (0.9, 0.95):
        assert clinical.sensitivity_at_specificity(ref, score, level) == pytest.approx(tpr[1 - fpr >= level].max())
        assert clinical.specificity_at_sensitivity(ref, score, level) == pytest.approx((1 - fpr[tpr >= level]).max())


def test_ece_hand_computed() -> None:
    # two bins (0, 0.5], (0.5, 1]: bin 2 holds 0.6, 0.8 (mean 0.7) with 1 of 2 right (0.5) -> gap 0.2 on 2 of 4
    # bin 1 holds 0.3, 0.5 (mean 0.4) with 0 of 2 right -> gap 0.4 on 2 of 4; ECE = 0.3
    rel = clinical.reliability([0.3, 0.5, 0.6, 0.8], [0, 0, 1, 0], bins=2)
    assert rel["ece"] == pytest.approx(0.3)
    assert rel["count"] == [2, 2]
    assert rel["accuracy"] == [0.0, 0.5]
    assert clinical.reliability([1.0, 1.0], [1, 1], bins=10)["ece"] == pytest.approx(0.0)


def test_temperature_recovers_a_known_overconfidence() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=2.0, size=(4000, 5))
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    t = np.array([rng.choice(5, p=row) for row in true_p])
    over = np.exp(2.5 * logits) / np.exp(2.5 * logits).sum(1, keepdims=True)  # as confident as T = 1/2.5
    fitted = clinical.fit_temperature(over, t)
    assert fitted == pytest.approx(2.5, rel=0.1)
    scaled = clinical.scale_probabilities(over, fitted)
    assert clinical.nll(scaled, t) < clinical.nll(over, t)
    assert clinical.expected_calibration_error(scaled, t) < clinical.expected_calibration_error(over, t)


def test_patient_bootstrap_is_seeded_and_covers_the_truth() -> None:
    """Both eyes of a patient share a patient effect: the mean's 95% CI must hold the true mean 0 in about
    95% of repeated studies, which resampling photos as if independent would not."""
    rng = np.random.default_rng(7)
    patients = np.repeat(np.arange(40), 2)
    covered, photo_covered, trials = 0, 0, 200
    for _ in range(trials):
        values = np.repeat(rng.normal(size=40), 2) + 0.3 * rng.normal(size=80)
        ci = clinical.bootstrap(lambda i, v=values: float(v[i].mean()), patients, n_boot=300, seed=int(rng.integers(1 << 30)))
        covered += ci["low"] <= 0.0 <= ci["high"]
        naive = clinical.bootstrap(lambda i, v=values: float(v[i].mean()), np.arange(80), n_boot=300, seed=1)
        photo_covered += naive["low"] <= 0.0 <= naive["high"]
    assert 0.89 <= covered / trials <= 0.99
    assert photo_covered / trials < covered / trials - 0.05
    values = rng.normal(size=80)
    a = clinical.bootstrap(lambda i: float(values[i].mean()), patients, 100, seed=5)
    assert a == clinical.bootstrap(lambda i: float(values[i].mean()), patients, 100, seed=5)
    assert clinical.bootstrap(lambda i: None, patients, 10)["resamples"] == 0


def test_tta_views_average_as_declared() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert len(tta.views("none")) == 1 and len(tta.views("flips")) == 3 and len(tta.views("flips+rot90")) == 6
    got = tta.averaged(lambda v: v, x, "flips")
    torch.testing.assert_close(got, (x + x.flip(3) + x.flip(2)) / 3)
    with pytest.raises(ValueError):
        tta.views("sideways")


def test_sightx_evaluate_end_to_end(tiny_checkpoint: Path, tiny_shards: Path, tmp_path: Path) -> None:
    from sightx.cli import evaluate
    from sightx.contracts import checkpoint as ckpt
    from sightx.inference.grader import Grader

    calibrated = tmp_path / "calibrated.pt"
    args = [str(tiny_checkpoint), str(tiny_shards), "--out", str(tmp_path / "ev"), "--bootstrap", "50", "--quiet", "--device", "cpu"]
    result = CliRunner().invoke(evaluate, [*args, "--tta", "flips", "--fit-temperature", str(calibrated)])
    assert result.exit_code == 0, result.output
    assert "QWK" in result.output and "95% CIs: patient-level bootstrap" in result.output
    data = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert data["n"] == 40 and data["source"]["tta"] == "flips"
    assert set(data["qwk"]) == {"estimate", "low", "high", "resamples"}
    assert "sensitivity_at_90_specificity" in data["referable"] and len(data["per_grade_auc"]) == 5
    page = (tmp_path / "ev" / "report.html").read_text()
    assert page.count("<svg") == 2 and "Confusion matrix" in page
    assert "<th>per photo</th>" in page and "per patient" not in page  # no fusion asked: one level
    assert f"<tr><th>QWK</th><td>{_ci_text(data['qwk'])}</td></tr>" in page
    t = ckpt.load(calibrated).temperature
    assert t is not None and data["temperature"]["value"] == pytest.approx(t)

    plain, scaled = Grader(tiny_checkpoint, "cpu"), Grader(calibrated, "cpu")
    x = [torch.zeros(3, 64, 64, dtype=torch.uint8) + 90]
    np.testing.assert_allclose(scaled.outputs(x), clinical.scale_probabilities(plain.outputs(x), t), atol=1e-5)

    result = CliRunner().invoke(evaluate, [*args, "--split", "test"])
    assert result.exit_code == 1 and "no labelled samples in split test" in result.output


def test_a_checkpoint_temperature_out_of_range_is_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import dataclasses

    from sightx.contracts import checkpoint as ckpt

    bad = tmp_path / "bad.pt"
    ckpt.save(bad, dataclasses.replace(ckpt.load(tiny_checkpoint), temperature=0.0))
    with pytest.raises(ckpt.CheckpointError, match="temperature"):
        ckpt.load(bad)


def test_predict_takes_tta(tiny_checkpoint: Path, tiny_shards: Path, tmp_path: Path) -> None:
    import csv

    from sightx.cli import predict

    out = tmp_path / "p.csv"
    shard = sorted(tiny_shards.glob("*.tar"))[0]
    res = CliRunner().invoke(predict, [str(shard), "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--tta", "flips", "--quiet"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert rows and all(r["level"] != "" for r in rows)


def test_a_regression_heads_assessment_has_no_probabilities_to_calibrate() -> None:
    from sightx.evaluation.assess import assess, format_assessment
    from sightx.evaluation.report import render_html

    t, p, pred = _data(60, seed=5)
    score = p @ np.arange(5.0)
    a = assess(t, pred, score, np.repeat(np.arange(30), 2), None, n_boot=20, seed=1)
    assert a["calibration"] is None and a["per_grade_auc"] == [None] * 5
    assert a["referable"]["auc"]["estimate"] == pytest.approx(sk.roc_auc_score(t >= 2, score), abs=1e-4)
    assert "per-grade AUROC (one-vs-rest): 0: n/a" in format_assessment(a)
    assert "Reliability (ECE n/a)" in render_html(a, "regress <b>")
    assert "regress &lt;b&gt;" in render_html(a, "regress <b>")


def test_fusing_eyes_grades_a_patient_by_the_worse_eye() -> None:
    from sightx.evaluation.fusion import fuse_eyes
    from sightx.models.heads import get

    head = get("classify")
    # patient 10: a clean left eye and a referable right eye; patient 11: two clean eyes; patient 12: one photo
    patients = np.array(["10", "11", "10", "11", "12"])
    grades = np.array([0, 0, 2, 1, 3])
    probs = np.array(
        [
            [0.90, 0.05, 0.03, 0.01, 0.01],  # 10 left: called 0
            [0.80, 0.15, 0.03, 0.01, 0.01],  # 11 left: called 0
            [0.10, 0.10, 0.60, 0.10, 0.10],  # 10 right: called 2, referable 0.8
            [0.30, 0.60, 0.05, 0.03, 0.02],  # 11 right: called 1
            [0.05, 0.05, 0.10, 0.70, 0.10],  # 12: called 3
        ]
    )
    predicted, score = head.grades(probs, []), head.referable_score(probs)
    fused = fuse_eyes(patients, grades, predicted, score, probs)
    assert fused.ids.tolist() == ["10", "11", "12"] and fused.photos.tolist() == [2, 2, 1]
    assert fused.grades.tolist() == [2, 1, 3] and fused.predicted.tolist() == [2, 1, 3]
    # patient 10 is referred on its right eye, although its left eye alone is not, and the eyes' mean is not either
    assert predicted[0] < 2 and fused.predicted[0] >= 2
    assert fused.referable_score[0] == pytest.approx(0.8) and (score[0] + score[2]) / 2 < 0.5
    # the worse eye's grade distribution, eyes independent: P(max <= g) = product of the eyes' CDFs
    assert fused.probabilities is not None
    cdf = np.cumsum(probs[0]) * np.cumsum(probs[2])
    np.testing.assert_allclose(np.cumsum(fused.probabilities[0]), cdf, atol=1e-9)
    np.testing.assert_allclose(fused.probabilities[2], probs[4])
    assert fuse_eyes(patients, grades, predicted, score).probabilities is None  # a regression head has none


def test_sightx_evaluate_fuse_eyes_reports_both_levels(tiny_checkpoint: Path, tiny_shards: Path, tmp_path: Path) -> None:
    from sightx.cli import evaluate

    args = [str(tiny_checkpoint), str(tiny_shards), "--out", str(tmp_path / "ev"), "--bootstrap", "20", "--quiet", "--device", "cpu"]
    result = CliRunner().invoke(evaluate, [*args, "--fuse-eyes"])
    assert result.exit_code == 0, result.output
    assert "per patient" in result.output
    data = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    eye, patient = data, data["patient_level"]
    assert eye["level"] == "photo" and patient["level"] == "patient"
    assert patient["n"] == patient["patients"] == eye["patients"] < eye["n"]
    assert "qwk" in patient and "auc" in patient["referable"] and "worse eye" in patient["fusion"]["rule"]
    assert sum(int(k) * v for k, v in patient["fusion"]["photos_per_patient"].items()) == eye["n"]
    page = (tmp_path / "ev" / "report.html").read_text()
    assert "<th>per photo</th><th>per patient (worse eye)</th>" in page
    for label, photo, fused in (
        ("QWK", eye["qwk"], patient["qwk"]),
        ("Cohen&#x27;s kappa", eye["kappa"], patient["kappa"]),
        (
            "sensitivity at 90% specificity",
            eye["referable"]["sensitivity_at_90_specificity"],
            patient["referable"]["sensitivity_at_90_specificity"],
        ),
        ("ECE", eye["calibration"]["ece_ci"], patient["calibration"]["ece_ci"]),
    ):  # both columns from the JSON's numbers, each with its interval
        assert f"<tr><th>{label}</th><td>{_ci_text(photo)}</td><td>{_ci_text(fused)}</td></tr>" in page
    auc = f"<td>{_ci_text(eye['referable']['auc'])}</td><td>{_ci_text(patient['referable']['auc'])}</td>"
    assert f"<tr><th>referable DR AUROC</th>{auc}</tr>" in page
    positives = f"<td>{eye['referable']['positives']}</td><td>{patient['referable']['positives']}</td>"
    assert f"<tr><th>referable DR (grade &gt;= 2) positives</th>{positives}</tr>" in page
    assert f"<tr><th>n graded</th><td>{eye['n']}</td><td>{patient['n']}</td></tr>" in page
