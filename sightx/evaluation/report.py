"""sightx-evaluate's report: one self-contained HTML page (a metrics table with 95% CIs, per photo and, under
--fuse-eyes, per patient beside it; inline SVG: referable ROC, reliability diagram; the confusion matrix) and
the same numbers as JSON, both written atomically."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from sightx.evaluation.assess import OPERATING_POINTS, _ci_text
from sightx.files.atomic import atomic_write_text

SIDE = 260  # plot area, px
PAD = 36


def _axes(title: str, xlabel: str, ylabel: str) -> list[str]:
    w = SIDE + 2 * PAD
    ticks = "".join(
        f'<text x="{PAD + v * SIDE:.0f}" y="{PAD + SIDE + 14}" font-size="10" text-anchor="middle">{v:g}</text>'
        f'<text x="{PAD - 4}" y="{PAD + (1 - v) * SIDE + 3:.0f}" font-size="10" text-anchor="end">{v:g}</text>'
        for v in (0, 0.5, 1)
    )
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{w}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{w / 2}" y="16" font-size="13" text-anchor="middle">{html.escape(title)}</text>',
        f'<rect x="{PAD}" y="{PAD}" width="{SIDE}" height="{SIDE}" fill="none" stroke="#888"/>',
        f'<text x="{w / 2}" y="{w - 6}" font-size="11" text-anchor="middle">{html.escape(xlabel)}</text>',
        f'<text x="10" y="{w / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 10 {w / 2})">{html.escape(ylabel)}</text>',
        ticks,
        f'<line x1="{PAD}" y1="{PAD + SIDE}" x2="{PAD + SIDE}" y2="{PAD}" stroke="#bbb" stroke-dasharray="4 3"/>',
    ]


def _xy(x: float, y: float) -> str:
    return f"{PAD + x * SIDE:.1f},{PAD + (1 - y) * SIDE:.1f}"


def roc_svg(roc: dict[str, list[float]] | None, auc: str) -> str:
    """The referable-DR ROC curve, chance as the dashed diagonal."""
    parts = _axes(f"Referable DR ROC (AUROC {auc})", "1 - specificity", "sensitivity")
    if roc:
        points = " ".join(_xy(x, y) for x, y in zip(roc["fpr"], roc["tpr"]))
        parts.append(f'<polyline points="{points}" fill="none" stroke="#1f5fa8" stroke-width="2"/>')
    return "".join(parts) + "</svg>"


def reliability_svg(bins: dict[str, Any] | None, ece: str) -> str:
    """Accuracy per confidence bin as bars against the diagonal of perfect calibration."""
    parts = _axes(f"Reliability (ECE {ece})", "confidence of the predicted grade", "accuracy")
    if bins:
        edges = bins["edges"]
        for lo, hi, acc, n in zip(edges[:-1], edges[1:], bins["accuracy"], bins["count"]):
            if n and acc is not None:
                x, w = PAD + lo * SIDE, (hi - lo) * SIDE
                parts.append(
                    f'<rect x="{x:.1f}" y="{PAD + (1 - acc) * SIDE:.1f}" width="{w - 1:.1f}" height="{acc * SIDE:.1f}" '
                    f'fill="#1f5fa8" fill-opacity="0.7"><title>{lo:.2f}-{hi:.2f}: {n} photos, accuracy {acc:.2f}</title></rect>'
                )
    return "".join(parts) + "</svg>"


def confusion_table(confusion: list[list[int]]) -> str:
    """Counts, rows = true grade, shaded by the row's share (the diagonal is per-grade recall)."""
    head = "".join(f"<th>{g}</th>" for g in range(len(confusion)))
    rows = []
    for g, row in enumerate(confusion):
        total = max(sum(row), 1)
        cells = "".join(f'<td style="background:rgba(31,95,168,{c / total:.2f})">{c}</td>' for c in row)
        rows.append(f"<tr><th>{g}</th>{cells}</tr>")
    return f'<table class="cm"><tr><th>true\\pred</th>{head}</tr>{"".join(rows)}</table>'


def metric_rows(a: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value with its 95% CI) of one level's assessment, in the same order for every level."""
    ref, cal = a["referable"], a.get("calibration")
    rows = [
        ("n graded", str(a["n"])),
        ("patients", str(a["patients"])),
        ("grades 0-4", " ".join(str(c) for c in a["grade_counts"])),
        ("QWK", _ci_text(a["qwk"])),
        ("Cohen's kappa", _ci_text(a["kappa"])),
        ("accuracy", f"{a['accuracy']:.3f} (always-grade-{a['baseline']['grade']}: {a['baseline']['accuracy']:.3f})"),
        ("referable DR (grade >= 2) positives", str(ref["positives"])),
        ("referable DR AUROC", _ci_text(ref["auc"])),
    ]
    for level in OPERATING_POINTS:
        pct = round(level * 100)
        rows.append((f"sensitivity at {pct}% specificity", _ci_text(ref[f"sensitivity_at_{pct}_specificity"])))
        rows.append((f"specificity at {pct}% sensitivity", _ci_text(ref[f"specificity_at_{pct}_sensitivity"])))
    rows += [(f"AUROC grade {g} vs rest", _ci_text(m)) for g, m in enumerate(a["per_grade_auc"])]
    rows.append(("ECE", _ci_text(cal["ece_ci"]) if cal else "n/a"))
    rows.append(("NLL", f"{cal['nll']:.3f}" if cal else "n/a"))
    return rows


def metrics_table(levels: list[tuple[str, dict[str, Any]]]) -> str:
    """One column per level (per photo; per patient under --fuse-eyes), one row per metric, each with its CI."""
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in levels)
    columns = [metric_rows(a) for _, a in levels]
    rows = [
        f"<tr><th>{html.escape(label)}</th>{''.join(f'<td>{html.escape(col[i][1])}</td>' for col in columns)}</tr>"
        for i, (label, _) in enumerate(columns[0])
    ]
    return f'<table class="metrics"><tr><th>metric (95% CI)</th>{head}</tr>{"".join(rows)}</table>'


def levels(a: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The levels an assessment holds: per photo, and per patient when eyes were fused."""
    fused = a.get("patient_level")
    return [("per photo", a)] + ([("per patient (worse eye)", fused)] if fused else [])


def footnote(a: dict[str, Any]) -> str:
    """How the intervals were made, and the temperature graded with."""
    b = a["bootstrap"]
    text = f"95% CIs: patient-level bootstrap, {b['resamples']} resamples, seed {b['seed']}."
    if "temperature" in a:
        text += f" Temperature {a['temperature']['value']:.3f} ({a['temperature']['source']})."
    return f"<p>{html.escape(text)}</p>"


def render_html(a: dict[str, Any], title: str) -> str:
    cal = a.get("calibration") or {}
    ece = _ci_text(cal.get("ece_ci")) if cal else "n/a"
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;margin:2em;max-width:1000px}"
            " .cm td,.cm th,.metrics td,.metrics th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
            " .cm,.metrics{border-collapse:collapse} .metrics th:first-child{text-align:left}"
            " .charts{display:flex;flex-wrap:wrap;gap:1em}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            metrics_table(levels(a)),
            footnote(a),
            '<div class="charts">',
            roc_svg(a["referable"].get("roc"), _ci_text(a["referable"]["auc"])),
            reliability_svg(cal.get("bins") if cal else None, ece),
            "</div>",
            "<h2>Confusion matrix</h2>",
            confusion_table(a["confusion"]),
            "</body></html>",
        ]
    )


def write_report(a: dict[str, Any], out: Path, title: str) -> tuple[Path, Path]:
    """OUT/report.html and OUT/metrics.json, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    page, data = out / "report.html", out / "metrics.json"
    atomic_write_text(data, json.dumps(a, indent=1, allow_nan=False) + "\n")
    atomic_write_text(page, render_html(a, title))
    return page, data
