"""One labelled set's full assessment as a JSON-ready dict: the numbers sightx-evaluate prints and reports.

Each headline number carries a patient-level bootstrap 95% CI (sightx.evaluation.clinical.bootstrap),
seeded, so a rerun gives the same interval. Undefined values (a grade absent from the set) are None.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sightx.evaluation import clinical, metrics
from sightx.labels.grades import NUM_GRADES, REFERABLE

OPERATING_POINTS = (0.90, 0.95)


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _ci(result: dict[str, Any]) -> dict[str, Any]:
    return {k: (_r(v) if k != "resamples" else v) for k, v in result.items()}


def assess(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    referable_score: np.ndarray,
    patients: np.ndarray,
    probabilities: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    bins: int = 15,
) -> dict[str, Any]:
    """Kappas, referable and per-grade AUROC, operating points, calibration, each with its CI where it has one.

    `probabilities` (N, 5) for a classifier; a regression head has none, so its per-grade AUROC and
    calibration are None."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    s = np.asarray(referable_score, dtype=np.float64)
    ref = t >= REFERABLE
    base = metrics.evaluate(t, p, s)

    def boot(stat: Any, offset: int) -> dict[str, Any]:
        return _ci(clinical.bootstrap(stat, patients, n_boot, seed + offset))

    def defined_kappa(fn: Any) -> Any:
        return lambda i: fn(t[i], p[i]) if metrics.kappa_is_defined(t[i], p[i]) else None

    out: dict[str, Any] = {
        "n": int(t.size),
        "patients": int(np.unique(patients).size),
        "grade_counts": np.bincount(t, minlength=NUM_GRADES).tolist(),
        "accuracy": base["accuracy"],
        "confusion": base["confusion"],
        "per_grade_recall": base["per_grade_recall"],
        "baseline": base["baseline"],
        "qwk": boot(defined_kappa(metrics.quadratic_weighted_kappa), 0),
        "kappa": boot(defined_kappa(clinical.cohen_kappa), 1),
        "referable": {
            "positives": int(ref.sum()),
            "sensitivity_at_grade": base["referable"]["sensitivity"],
            "specificity_at_grade": base["referable"]["specificity"],
            "auc": boot(lambda i: metrics.roc_auc(ref[i], s[i]), 2),
        },
        "bootstrap": {"resamples": n_boot, "seed": seed, "unit": "patient", "level": 0.95},
    }
    for k, level in enumerate(OPERATING_POINTS):
        pct = round(level * 100)
        out["referable"][f"sensitivity_at_{pct}_specificity"] = boot(
            lambda i, lv=level: clinical.sensitivity_at_specificity(ref[i], s[i], lv), 3 + k
        )
        out["referable"][f"specificity_at_{pct}_sensitivity"] = boot(
            lambda i, lv=level: clinical.specificity_at_sensitivity(ref[i], s[i], lv), 5 + k
        )
    if ref.any() and (~ref).any():
        fpr, tpr, _ = clinical.roc_curve(ref, s)
        out["referable"]["roc"] = {"fpr": [_r(v) for v in fpr], "tpr": [_r(v) for v in tpr]}
    if probabilities is None:
        out["per_grade_auc"] = [None] * NUM_GRADES
        out["calibration"] = None
        return out
    probs = np.asarray(probabilities, dtype=np.float64)
    out["per_grade_auc"] = [
        boot(lambda i, g=g: metrics.roc_auc(t[i] == g, probs[i, g]), 10 + g) if (t == g).any() and (t != g).any() else None
        for g in range(NUM_GRADES)
    ]
    rel = clinical.reliability(probs.max(1), probs.argmax(1) == t, bins)
    out["calibration"] = {
        "ece": _r(rel["ece"]),
        "ece_ci": boot(lambda i: clinical.expected_calibration_error(probs[i], t[i], bins), 20),
        "nll": _r(clinical.nll(probs, t)),
        "bins": {k: ([_r(v) for v in rel[k]] if k in ("confidence", "accuracy", "edges") else rel[k]) for k in rel if k != "ece"},
    }
    return out


def _ci_text(m: dict[str, Any] | None) -> str:
    if not m or m.get("estimate") is None:
        return "n/a"
    if m.get("low") is None:
        return f"{m['estimate']:.3f}"
    return f"{m['estimate']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"


def format_assessment(a: dict[str, Any]) -> str:
    """A short text block of an `assess()` dict: estimates with their 95% CIs."""
    ref = a["referable"]
    lines = [
        f"n={a['n']} photos, {a['patients']} patients, grades {a['grade_counts']}",
        f"QWK {_ci_text(a['qwk'])}   kappa {_ci_text(a['kappa'])}   accuracy {a['accuracy']:.3f} "
        f"(always-grade-{a['baseline']['grade']}: {a['baseline']['accuracy']:.3f})",
        f"referable DR (grade>={REFERABLE}, {ref['positives']} positive): AUROC {_ci_text(ref['auc'])}",
    ]
    for level in OPERATING_POINTS:
        pct = round(level * 100)
        lines.append(
            f"  sensitivity at {pct}% specificity {_ci_text(ref[f'sensitivity_at_{pct}_specificity'])}   "
            f"specificity at {pct}% sensitivity {_ci_text(ref[f'specificity_at_{pct}_sensitivity'])}"
        )
    lines.append("per-grade AUROC (one-vs-rest): " + "  ".join(f"{g}: {_ci_text(m)}" for g, m in enumerate(a["per_grade_auc"])))
    cal = a.get("calibration")
    if cal:
        lines.append(f"calibration: ECE {_ci_text(cal['ece_ci'])}  NLL {cal['nll']:.3f}")
    if "temperature" in a:
        lines.append(f"temperature {a['temperature']['value']:.3f} ({a['temperature']['source']})")
    lines.append(f"95% CIs: patient-level bootstrap, {a['bootstrap']['resamples']} resamples, seed {a['bootstrap']['seed']}")
    return "\n".join(lines)
