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


# --- every failure one line; undefined is not zero; extra ids said ------------------------------


def _cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(score_cli, list(args))
    return res.exit_code, res.output


def _one_line_error(code: int, output: str, *wanted: str) -> None:
    assert code == 1 and len(output.strip().splitlines()) == 1 and "Traceback" not in output, output
    assert all(w in output for w in wanted), output


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_probabilities_that_are_not_finite_are_one_line(files: tuple, tmp_path: Path, value: str) -> None:
    pred, truth, *_ = files
    with open(pred, newline="") as f:
        header, *rows = list(csv.reader(f))
    rows[0][4] = value  # p2
    bad = _write(tmp_path / "bad.csv", header, rows)
    _one_line_error(*_cli(str(bad), "--truth", str(truth)), "not a finite number", repr(rows[0][0]))
    score_header = _write(
        tmp_path / "s.csv", ["image", "level", "score"], [[r[0], r[1], value if i == 0 else 1.5] for i, r in enumerate(rows)]
    )
    _one_line_error(*_cli(str(score_header), "--truth", str(truth)), "score not a finite number")


def test_a_row_longer_than_the_header_is_one_line(tmp_path: Path) -> None:
    truth = _write(tmp_path / "t.csv", ["image", "level"], [["a", 0], ["b", 2]])
    pred = tmp_path / "p.csv"
    pred.write_text("image,level\na,0\nb,2,extra,fields\n")
    _one_line_error(*_cli(str(pred), "--truth", str(truth)), "line 3 has more fields than the header's 2")


def test_a_truth_file_with_only_a_header_is_one_line(tmp_path: Path) -> None:
    truth = _write(tmp_path / "t.csv", ["image", "level", "Usage"], [])
    pred = _write(tmp_path / "p.csv", ["image", "level"], [["a", 0]])
    _one_line_error(*_cli(str(pred), "--truth", str(truth)), "t.csv: no rows, only a header")


def test_json_into_a_missing_folder_is_one_line(files: tuple, tmp_path: Path) -> None:
    pred, truth, *_ = files
    _one_line_error(
        *_cli(str(pred), "--truth", str(truth), "--json", str(tmp_path / "no" / "such" / "s.json")), "cannot write", "No such file"
    )


def test_a_truth_that_is_a_fifo_is_refused_not_waited_on(files: tuple, tmp_path: Path) -> None:
    import os
    import threading

    pred, _, *_ = files
    fifo = tmp_path / "truth.csv"
    os.mkfifo(fifo)
    stop = threading.Event()

    def unblock() -> None:  # should anything open it to read, a writer comes after 3 s: a failure, not a hang
        if not stop.wait(3):
            while not stop.wait(0.2):
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass

    t = threading.Thread(target=unblock, daemon=True)
    t.start()
    try:
        _one_line_error(*_cli(str(pred), "--truth", str(fifo)), "not a regular file (a FIFO)")
    finally:
        stop.set()
        t.join()


def test_perfect_predictions_of_a_single_grade_have_an_undefined_kappa_not_zero(tmp_path: Path) -> None:
    truth = _write(tmp_path / "t.csv", ["image", "level", "Usage"], [["a", 2, "Public"], ["b", 2, "Private"], ["c", 2, "Private"]])
    pred = _write(tmp_path / "p.csv", ["image", "level"], [["a", 2], ["b", 2], ["c", 2]])
    result = score(pred, truth)
    assert result["all"]["kappa"] is None and result["all"]["baseline"]["kappa"] is None
    code, output = _cli(str(pred), "--truth", str(truth), "--json", str(tmp_path / "s.json"))
    assert code == 0 and "QWK 0.0000" not in output and "QWK undefined" in output.splitlines()[0], output
    assert '"kappa": null' in (tmp_path / "s.json").read_text()
    # Two grades in the truth: defined again, and a wrong constant prediction scores its 0.
    truth = _write(tmp_path / "t2.csv", ["image", "level"], [["a", 2], ["b", 0], ["c", 2]])
    assert score(pred, truth)["all"]["kappa"] == 0.0


def test_extra_ids_are_counted_and_named_in_the_text(files: tuple, tmp_path: Path) -> None:
    pred, truth, *_ = files
    with open(pred, newline="") as f:
        header, *rows = list(csv.reader(f))
    extra = [[f"extra_{i:07d}", 0, *rows[0][2:]] for i in range(20_000)]
    more = _write(tmp_path / "more.csv", header, rows + extra)
    code, output = _cli(str(more), "--truth", str(truth))
    assert code == 0, output
    assert "20,000 prediction(s) for ids not in the truth file were ignored, e.g. 'extra_0000000'" in "\n".join(output.splitlines()[:4])
