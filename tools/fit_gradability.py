"""Fit the gradability model on real labelled photos and write sightx/image/gradability_fit.py.

    python tools/fit_gradability.py [../shared/real-dev] [--write]

Reads `eyepacs-1024/train/*.jpeg` and `eyepacs-1024/gradability.csv` (image, gradable, eyeq_quality)
under the folder, measures every photo through the real preprocessing path (the field at the
analysis size, sightx.image.preprocess.analysis_field at --size 256), then:

- nested cross-validation by patient (both eyes of a patient in the same fold), 5 outer folds x 5
  seeds: the inner folds pick the L2 strength, the outer fold measures AUC (gradable vs not) on
  patients the model never saw; AUC against EyeQ's Reject on the photos EyeQ graded as a second view;
- the threshold: the out-of-fold score at which at most 10% of gradable photos fall below, with
  the sensitivity and specificity there;
- with --write, the model refitted on every photo (the strength the folds chose most) and written
  with its figures. Only the coefficients and aggregate figures go into the repository, never a
  photo, a label or a per-photo number.

Needs scikit-learn (the `test` extra); the package itself evaluates the model in plain Python.
"""

from __future__ import annotations

import csv
import math
import pprint
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from sightx.image import gradability, gradability_features
from sightx.image.preprocess import PreprocessOptions, Rejected, analysis_field, decode_bytes

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "sightx" / "image" / "gradability_fit.py"
OPTS = PreprocessOptions(size=gradability.ANALYSIS_SIZE)
STRENGTHS = (0.01, 0.03, 0.1, 0.3, 1.0)
MAX_FALSE_WARNINGS = 0.10
SEEDS = 5


def transform(x: np.ndarray) -> np.ndarray:
    """As gradability.fitted: signed log1p(10 |x|), which brings shares and ratios to similar spreads."""
    return np.sign(x) * np.log1p(np.abs(x) * 10.0)


def measure(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Features, ungradable (1/0), EyeQ quality ('' where not graded), patient ids, brightness/field gate, photos without a field."""
    with open(folder / "gradability.csv", newline="") as f:
        labels = {r["image"]: r for r in csv.DictReader(f)}
    rows, y, eyeq, patients, gates, missing = [], [], [], [], [], 0
    for path in sorted((folder / "train").glob("*.jpeg")):
        if path.stem not in labels:
            continue
        try:
            img, c, frame, fov_fraction = analysis_field(decode_bytes(path.read_bytes(), OPTS), OPTS)
        except Rejected:
            missing += 1  # no field: the gate scores it 0 whatever the model says; not a fitting example
            continue
        values = gradability_features.features(img, c, frame)
        rows.append([values[k] for k in gradability_features.FEATURES])
        y.append(1 - int(labels[path.stem]["gradable"]))
        eyeq.append(labels[path.stem]["eyeq_quality"])
        patients.append(path.stem.split("_")[0])
        gates.append(gradability.gate(gradability.measures(img, c, frame), fov_fraction, True)[0])
    return np.array(rows), np.array(y), np.array(eyeq), np.array(patients), np.array(gates), missing


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, scale = x.mean(axis=0), x.std(axis=0)
    return mean, np.where(scale > 0, scale, 1.0)


Params = tuple[np.ndarray, np.ndarray, LogisticRegression]


def fit(x: np.ndarray, y: np.ndarray, strength: float) -> Params:
    t = transform(x)
    mean, scale = standardise(t)
    return mean, scale, LogisticRegression(C=strength, max_iter=5000).fit((t - mean) / scale, y)


def predict(params: Params, x: np.ndarray) -> np.ndarray:
    mean, scale, model = params
    return model.predict_proba((transform(x) - mean) / scale)[:, 1]


def choose_strength(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int) -> float:
    """The L2 strength with the best AUC over inner folds by patient."""
    best, best_auc = STRENGTHS[0], -1.0
    for strength in STRENGTHS:
        p = np.zeros(len(y))
        for train, test in StratifiedGroupKFold(4, shuffle=True, random_state=seed).split(x, y, groups):
            p[test] = predict(fit(x[train], y[train], strength), x[test])
        auc = roc_auc_score(y, p)
        if auc > best_auc:
            best, best_auc = strength, auc
    return best


def nested_cv(x: np.ndarray, y: np.ndarray, groups: np.ndarray, gates: np.ndarray) -> tuple[list[float], list[float], np.ndarray, Counter]:
    """Per seed: overall AUC, and every outer fold's AUC; the out-of-fold scores (gated) of each seed."""
    aucs, fold_aucs, scores, chosen = [], [], np.zeros((SEEDS, len(y))), Counter()
    for seed in range(SEEDS):
        for train, test in StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(x, y, groups):
            strength = choose_strength(x[train], y[train], groups[train], seed)
            chosen[strength] += 1
            p_ungradable = predict(fit(x[train], y[train], strength), x[test])
            scores[seed, test] = (1 - p_ungradable) * gates[test]
            fold_aucs.append(roc_auc_score(1 - y[test], scores[seed, test]))
        aucs.append(roc_auc_score(1 - y, scores[seed]))
    return aucs, fold_aucs, scores, chosen


def operating_point(scores: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Threshold with at most MAX_FALSE_WARNINGS of gradable photos below it; sensitivity, specificity there."""
    gradable = np.sort(scores[y == 0])
    threshold = float(gradable[int(math.floor(MAX_FALSE_WARNINGS * len(gradable)))])
    sensitivity = float(np.mean(scores[y == 1] < threshold))
    specificity = float(np.mean(scores[y == 0] >= threshold))
    return threshold, sensitivity, specificity


def main(argv: list[str]) -> None:
    warnings.filterwarnings("ignore", category=UserWarning)
    args = [a for a in argv if not a.startswith("--")]
    folder = (Path(args[0]) if args else ROOT / ".." / "shared" / "real-dev") / "eyepacs-1024"
    x, y, eyeq, groups, gates, missing = measure(folder)
    print(f"{len(y)} photos ({int(y.sum())} ungradable) from {len(set(groups))} patients; {missing} without a field")
    for name, column in zip(gradability_features.FEATURES, x.T):
        auc = roc_auc_score(y, column)
        print(f"  {name:20s} alone: AUC {max(auc, 1 - auc):.3f} ({'higher' if auc > 0.5 else 'lower'} when ungradable)")
    aucs, fold_aucs, scores, chosen = nested_cv(x, y, groups, gates)
    mean_scores = scores.mean(axis=0)
    threshold, sens, spec = operating_point(mean_scores, y)
    graded = eyeq != ""
    eyeq_auc = roc_auc_score((eyeq[graded] != "2").astype(int), mean_scores[graded])
    summary = {
        "fitted_on": folder.name,
        "photos": int(len(y)),
        "ungradable": int(y.sum()),
        "patients": int(len(set(groups))),
        "cv_auc": round(float(np.mean(aucs)), 3),
        "cv_auc_sd": round(float(np.std(aucs)), 3),
        "cv_fold_auc_range": [round(min(fold_aucs), 3), round(max(fold_aucs), 3)],
        "eyeq_graded": int(graded.sum()),
        "eyeq_reject": int((eyeq == "2").sum()),
        "eyeq_reject_auc": round(float(eyeq_auc), 3),
        "threshold": round(threshold, 3),
        "sensitivity": round(sens, 3),
        "specificity": round(spec, 3),
    }
    print(f"nested CV by patient, 5 folds x {SEEDS} seeds: AUC {summary['cv_auc']} +- {summary['cv_auc_sd']} ", end="")
    print(f"(folds {summary['cv_fold_auc_range'][0]}-{summary['cv_fold_auc_range'][1]}); strengths chosen {dict(chosen)}")
    print(f"against EyeQ Reject ({summary['eyeq_graded']} graded, {summary['eyeq_reject']} Reject): AUC {summary['eyeq_reject_auc']}")
    print(f"threshold {threshold:.3f} (<= {MAX_FALSE_WARNINGS:.0%} of gradable below): sensitivity {sens:.3f}, specificity {spec:.3f}")
    if "--write" in argv:
        strength = chosen.most_common(1)[0][0]
        write(fit(x, y, strength), strength, summary)
        print(f"wrote {OUT.relative_to(ROOT)} (C={strength})")


def write(params: Params, strength: float, summary: dict) -> None:
    mean, scale, model = params

    def floats(v: np.ndarray) -> str:
        items = [f"{float(a):.6g}" for a in v]
        rows = [", ".join(items[i : i + 8]) for i in range(0, len(items), 8)]
        return "[\n        " + ",\n        ".join(rows) + ",\n    ]"

    text = f'''"""The fitted gradability model: written by tools/fit_gradability.py, do not edit by hand.

A logistic regression (L2, C={strength}) for P(ungradable) over sightx.image.gradability_features,
each transformed as signed log1p(10 |x|) and standardised with the mean and scale below. Fitted on
{summary["photos"]} real EyePACS photos ({summary["ungradable"]} ungradable by the published re-grading of Voets et al.
2019; {summary["patients"]} patients) measured at --size {OPTS.size}. Its figures are under "cv": nested cross-validation
by patient (docs/gradability.md). No photo, label or per-photo number is kept here.
"""

from typing import Any

FIT: dict[str, Any] = {{
    "features": {pprint.pformat(list(gradability_features.FEATURES), width=120, indent=4)},
    "mean": {floats(mean)},
    "scale": {floats(scale)},
    "coef": {floats(model.coef_[0])},
    "intercept": {float(model.intercept_[0]):.6g},
    "threshold": {summary["threshold"]},
    "cv": {pprint.pformat(summary, width=120, indent=4, sort_dicts=False)},
}}
'''
    OUT.write_text(text)


if __name__ == "__main__":
    main(sys.argv[1:])
