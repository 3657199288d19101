"""sightx-evaluate's report: one self-contained HTML page (inline SVG: referable ROC, reliability diagram,
confusion matrix) and the same numbers as JSON, both written atomically."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from sightx.evaluation.assess import _ci_text, format_assessment
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


def render_html(a: dict[str, Any], title: str) -> str:
    cal = a.get("calibration") or {}
    ece = _ci_text(cal.get("ece_ci")) if cal else "n/a"
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;margin:2em;max-width:1000px} pre{background:#f4f4f4;padding:1em}"
            " .cm td,.cm th{border:1px solid #ccc;padding:4px 10px;text-align:right} .cm{border-collapse:collapse}"
            " .charts{display:flex;flex-wrap:wrap;gap:1em}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            f"<pre>{html.escape(format_assessment(a))}</pre>",
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
