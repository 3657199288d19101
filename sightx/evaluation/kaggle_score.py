"""Kaggle's leaderboard metric on the released test labels: quadratic weighted kappa per Usage split.

Kaggle scored the Diabetic Retinopathy Detection submissions (`image,level`) by quadratic weighted
kappa against `testLabels.csv` (`image,level,Usage`), on the Public rows during the competition and
on the Private rows for the final ranking. This module reads both files strictly (a missing id,
a duplicate or a grade outside 0-4 is an error naming examples, never a silently smaller score)
and reports each split beside the always-grade-0 baseline, with the DR metrics of `sightx.evaluation.metrics`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sightx.errors import SightXError, one_line
from sightx.evaluation import metrics
from sightx.files.regular import NotARegularFile, read_regular
from sightx.labels.grades import NUM_GRADES, REFERABLE

USAGES = ("Public", "Private")


class ScoreError(SightXError):
    """A prediction or truth file that cannot be scored as it is."""


@dataclass(frozen=True)
class Table:
    """Rows of a CSV keyed by image id, with the columns that were there."""

    rows: dict[str, dict[str, str]]
    columns: tuple[str, ...]


def _examples(values: list[str], n: int = 3) -> str:
    shown = ", ".join(repr(v) for v in values[:n])
    return shown + (f" and {len(values) - n} more" if len(values) > n else "")


def read_table(path: Path, required: tuple[str, ...]) -> Table:
    """Image id -> row; ScoreError for a file that is not a regular file (a FIFO would block for
    ever), a missing column, a row longer than the header, no rows, an empty or duplicated id, a bad grade."""
    try:
        text = read_regular(path).decode("utf-8-sig")
        reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
        columns = tuple(c.strip() for c in reader.fieldnames or ())
        raw = []
        for row in reader:
            if None in row:  # DictReader keeps the fields past the header under None
                raise ScoreError(f"{path}: line {reader.line_num} has more fields than the header's {len(columns)}")
            raw.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
    except NotARegularFile as e:
        raise ScoreError(f"{path}: not a regular file ({e.what})") from None
    except OSError as e:
        raise ScoreError(f"{path}: cannot read ({e.strerror or one_line(str(e))})") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ScoreError(f"{path}: cannot read ({one_line(str(e))})") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise ScoreError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(columns) or 'none'})")
    if not raw:
        raise ScoreError(f"{path}: no rows, only a header")
    bad = [r["image"] for r in raw if r["level"] not in {str(g) for g in range(NUM_GRADES)}]
    if bad:
        raise ScoreError(f"{path}: level not a grade 0-{NUM_GRADES - 1} for {_examples(bad)}")
    rows: dict[str, dict[str, str]] = {}
    dups = []
    for r in raw:
        if not r["image"]:
            raise ScoreError(f"{path}: a row with an empty image id")
        if r["image"] in rows:
            dups.append(r["image"])
        rows[r["image"]] = r
    if dups:
        raise ScoreError(f"{path}: duplicate image id(s) {_examples(sorted(set(dups)))}")
    return Table(rows, columns)


def _referable_scores(pred: Table, ids: list[str], path: Path) -> np.ndarray | None:
    """P(grade >= 2) from p0..p4 columns, or a regression `score`; None when the file has neither.
    ScoreError naming examples for values that are numbers but not finite (NaN, inf)."""
    prob_cols = [f"p{g}" for g in range(NUM_GRADES)]
    if all(c in pred.columns for c in prob_cols):
        used = prob_cols
    elif "score" in pred.columns:
        used = ["score"]
    else:
        return None
    try:
        values = np.array([[float(pred.rows[i][c]) for c in used] for i in ids], dtype=np.float64)
    except ValueError:
        return None  # an empty probability (an unreadable photo's row): the AUC is left out, not guessed
    bad = [i for i, row in zip(ids, values) if not np.all(np.isfinite(row))]
    if bad:
        raise ScoreError(f"{path}: {'/'.join(used)} not a finite number (NaN or inf) for {_examples(bad)}")
    return values[:, REFERABLE:].sum(1) if used == prob_cols else values[:, 0]


def _kappa_or_none(y: np.ndarray, p: np.ndarray, kappa: float | None) -> float | None:
    """None where QWK is undefined: truth and predictions all one grade (no disagreement to expect)."""
    return kappa if metrics.kappa_is_defined(y, p) else None


def score(predictions: Path, truth: Path) -> dict[str, Any]:
    """Metrics per Usage split (Public, Private) and over all truth rows."""
    pred = read_table(predictions, ("image", "level"))
    true = read_table(truth, ("image", "level"))
    missing = sorted(set(true.rows) - set(pred.rows))
    if missing:
        raise ScoreError(f"{predictions}: no prediction for {len(missing)} truth id(s), e.g. {_examples(missing)}")
    extra = sorted(set(pred.rows) - set(true.rows))
    splits: dict[str, list[str]] = {"all": sorted(true.rows)}
    if "Usage" in true.columns:
        for usage in USAGES:
            splits[usage] = sorted(i for i, r in true.rows.items() if r["Usage"] == usage)
    result: dict[str, Any] = {
        "predictions": str(predictions),
        "truth": str(truth),
        "extra_predictions": len(extra),
        "extra_examples": extra[:3],
    }
    for name, ids in splits.items():
        if not ids:
            continue
        y = np.array([int(true.rows[i]["level"]) for i in ids])
        p = np.array([int(pred.rows[i]["level"]) for i in ids])
        m = metrics.evaluate(y, p, _referable_scores(pred, ids, predictions))
        m["kappa"] = _kappa_or_none(y, p, m["kappa"])
        m["baseline"]["kappa"] = _kappa_or_none(y, np.full_like(y, m["baseline"]["grade"]), m["baseline"]["kappa"])
        result[name] = m
    return result


def _qwk(kappa: float | None) -> str:
    return "undefined (truth and predictions all one grade)" if kappa is None else f"{kappa:.4f}"


def format_score(result: dict[str, Any]) -> str:
    lines = []
    for name in (*USAGES, "all"):
        if name in result:
            m = result[name]
            b = m["baseline"]
            lines.append(
                f"{name:>7}: QWK {_qwk(m['kappa'])} on {m['n']} images "
                f"(always-grade-{b['grade']}: QWK {_qwk(b['kappa'])}, accuracy {b['accuracy']:.4f})"
            )
    if result["extra_predictions"]:
        lines.append(
            f"{result['extra_predictions']:,} prediction(s) for ids not in the truth file were ignored, "
            f"e.g. {_examples(result['extra_examples'], 3)}"
        )
    lines.append("")
    lines.append(metrics.format_report(result["all"]))
    return "\n".join(lines)
