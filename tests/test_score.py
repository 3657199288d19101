"""sightx-score: Kaggle's metric per Usage split, checked against scikit-learn, and strict about its inputs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from sightx.cli import score as score_cli
from sightx.evaluation.kaggle_score import ScoreError, score


def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    n = 600
    ids = [f"{i // 2}_{'left' if i % 2 == 0 else 'right'}" for i in range(n)]
    y = rng.choice(5, n, p=[0.73, 0.07, 0.15, 0.03, 0.02])
    noisy = np.clip(y + rng.choice([-1, 0, 0, 0, 1], n), 0, 4)
    probs = rng.dirichlet(np.ones(5), n)
    usage = rng.choice(["Public", "Private"], n, p=[0.2, 0.8])
    truth = _write(tmp_path / "testLabels.csv", ["image", "level", "Usage"], [[i, g, u] for i, g, u in zip(ids, y, usage)])
    pred_rows = [[i, g, *(f"{q:.6f}" for q in p)] for i, g, p in zip(ids, noisy, probs)]
    pred = _write(tmp_path / "pred.csv", ["image", "level", *(f"p{g}" for g in range(5))], pred_rows[::-1])  # any order
    return pred, truth, y, noisy, probs, usage


def test_kappa_per_usage_split_equals_scikit_learn(files: tuple) -> None:
    pred, truth, y, noisy, probs, usage = files
    result = score(pred, truth)
    for name, mask in (("Public", usage == "Public"), ("Private", usage == "Private"), ("all", np.ones(len(y), bool))):
        expected = cohen_kappa_score(y[mask], noisy[mask], weights="quadratic")
        assert result[name]["kappa"] == pytest.approx(expected, abs=5e-5), name
        assert result[name]["n"] == mask.sum()
    auc = roc_auc_score(y >= 2, probs[:, 2:].sum(1))
    assert result["all"]["referable"]["auc"] == pytest.approx(auc, abs=5e-4)
    assert result["all"]["baseline"] == {"grade": 0, "accuracy": pytest.approx((y == 0).mean(), abs=5e-5), "kappa": 0.0}


def test_the_cli_prints_public_private_and_all_beside_the_baseline(files: tuple, tmp_path: Path) -> None:
    pred, truth, *_ = files
    res = CliRunner().invoke(score_cli, [str(pred), "--truth", str(truth), "--json", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].strip().startswith("Public: QWK") and lines[1].strip().startswith("Private: QWK") and "always-grade-0" in lines[0]
    assert (tmp_path / "s.json").stat().st_size > 0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda rows: rows[:-3], "no prediction for 3 truth id"),
        (lambda rows: rows + [rows[0]], "duplicate image id"),
        (lambda rows: [[rows[0][0], 7, *rows[0][2:]], *rows[1:]], "level not a grade 0-4"),
        (lambda rows: [[rows[0][0], "x", *rows[0][2:]], *rows[1:]], "level not a grade 0-4"),
    ],
)
def test_bad_predictions_are_one_line_errors_naming_examples(files: tuple, tmp_path: Path, edit, message: str) -> None:
    pred, truth, *_ = files
    with open(pred, newline="") as f:
        header, *rows = list(csv.reader(f))
    bad = _write(tmp_path / "bad.csv", header, edit(rows))
    with pytest.raises(ScoreError, match=message):
        score(bad, truth)
    res = CliRunner().invoke(score_cli, [str(bad), "--truth", str(truth)])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1 and message in res.output


def test_a_file_without_the_columns_is_refused(tmp_path: Path, files: tuple) -> None:
    _, truth, *_ = files
    bad = _write(tmp_path / "bad.csv", ["id", "grade"], [["1_left", 0]])
    with pytest.raises(ScoreError, match="missing column"):
        score(bad, truth)
