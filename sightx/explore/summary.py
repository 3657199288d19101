"""The few lines sightx-explore prints; the rest is in report.html and summary.json.

summary.json's keys are documented in docs/summary-schema.md; tests/test_explore.py checks every
summary it produces against that document, so the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sightx.explore.common import class_labels, pairs
from sightx.labels.kinds import GRADE


def format_summary(summary: dict[str, Any], out: Path) -> str:
    """What the command prints: headline numbers and where the report is."""
    lines = _raw_lines(summary) if summary["kind"] == "raw" else _shard_lines(summary)
    lines.append(f"  report: {out / 'report.html'}   summary: {out / 'summary.json'}")
    return "\n".join(lines)


def _raw_lines(summary: dict[str, Any]) -> list[str]:
    classes, props = summary["classes"], summary["properties"]
    lines = [f"{summary['images']} images in {summary['images_folder']}"]
    if classes:
        b, kind = classes["baseline"], summary["labels"]["kind"]
        if kind == GRADE:
            counts, always = "grades " + " ".join(f"{g}:{c}" for g, c in enumerate(classes["counts"])), str(b["grade"])
        else:
            names = class_labels(kind)
            counts, always = f"{kind} classes " + " ".join(f"{names[g]}:{c}" for g, c in enumerate(classes["counts"])), names[b["grade"]]
        lines.append(
            f"  labels: {classes['total']} rows, {counts}; always-{always} baseline: accuracy {b['accuracy']:.1%}, kappa {b['kappa']:.3f}"
        )
    else:
        lines.append(f"  labels: {summary['labels']['error']}")
    lines.append(
        f"  sampled {props['sampled']}: {props['unreadable']} unreadable, {props['too_dark']} too dark, "
        f"{props['over_exposed']} over-exposed, {props['fov_cut_off']} field cut off"
    )
    g = summary["gradability"]
    lines.append(f"  gradability: {g['below']} of {g['measured']} measured photo(s) below {g['threshold']:g} ({g['below_percent']:.1f}%)")
    return lines


def _shard_lines(summary: dict[str, Any]) -> list[str]:
    state = "complete" if summary["complete"] else f"{len(summary['pending_shards'])} shard(s) not built yet"
    labels = "" if summary["labels"] == "grade" else f", labelled with {summary['labels']} classes: {', '.join(summary['class_names'])}"
    lines = [f"shards in {summary['folder']} ({state}{labels})"]
    for name, info in summary["splits"].items():
        lines.append(f"  {name:5s} {info['count']:6d} samples in {info['shards']} shard(s)")
    rejects = summary["rejects"]
    lines.append(f"  {rejects['count']} rejected" + (f" ({pairs(rejects['by_reason'])})" if rejects["count"] else ""))
    g = summary["gradability"]
    if g["measured"]:
        lines.append(
            f"  gradability: {g['below']} of {g['measured']} labelled sample(s) below {g['threshold']:g} ({g['below_percent']:.1f}%)"
        )
    elif g["note"]:
        lines.append(f"  {g['note']}")
    before_after = summary["before_after"]
    if before_after["note"]:
        lines.append(f"  {before_after['note']}")
    skipped = before_after["skipped"]
    if skipped["count"]:
        lines.append(f"  {skipped['count']} malformed sample(s) or shard(s) passed over ({pairs(skipped['by_reason'])}): see the report")
    return lines
