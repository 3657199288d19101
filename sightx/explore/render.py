"""Sections of the report, rendered from what raw.py and shards.py computed: HTML text, charts, contact sheets.

Nothing here reads the input again; given the same findings it writes the same report.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from sightx.contracts import rejects as rejects_csv
from sightx.explore import charts
from sightx.explore.common import EXAMPLES, TILE, ExploreOptions, class_label, class_labels, pairs, pct
from sightx.explore.gradability import Shown
from sightx.explore.raw import METRICS, OVER_EXPOSED, TOO_DARK, RawFindings
from sightx.explore.report import Report, para, table
from sightx.explore.shards import ShardFindings
from sightx.explore.sheet import contact_sheet
from sightx.labels.kinds import GRADE, NAMES, classes

WORST_COLS = 4


def raw_report(report: Report, found: RawFindings, opts: ExploreOptions) -> dict[str, Any]:
    """Write the raw archive's report; returns the summary as written to summary.json."""
    summary = found.summary
    report.section("Inputs", _inputs(summary))
    kind = summary["labels"]["kind"]
    if summary["classes"] is not None:
        _classes(report, summary["classes"], kind)
    _gallery(report, found, opts)
    _properties(report, found, opts)
    g = summary["gradability"]
    scope = "photos measured" + ("" if summary["classes"] is not None else " (no usable label file: no per-grade shares)")
    note = f"{g['rejected']} sampled photo(s) have no score: unreadable or rejected by preprocessing (Image properties)."
    _gradability(report, g, found.least_gradable, kind, "photos", scope, note if g["rejected"] else None)
    report.finish(f"SightX: {summary['folder']}", summary)
    return summary


def shard_report(report: Report, found: ShardFindings, opts: ExploreOptions) -> dict[str, Any]:
    """Write the shard folder's report; returns the summary as written to summary.json."""
    summary = found.summary
    _splits(report, summary)
    _rejects(report, summary["rejects"])
    g = summary["gradability"]
    note = g["note"]
    if g["unscored"] and g["measured"]:
        note = f"{g['unscored']} sample(s) carry no score (written before sightx-shard recorded it)."
    _gradability(report, g, found.least_gradable, summary["labels"], "samples", "labelled samples", note)
    _before_after(report, found, opts)
    report.finish(f"SightX shards: {summary['folder']}", summary)
    return summary


# --- raw archives ------------------------------------------------------------------


def _inputs(summary: dict[str, Any]) -> str:
    """Where the data came from, and the mismatches between images and labels."""
    labels = summary["labels"]
    parts = [
        para(f"{summary['images']} images in {summary['images_folder']}; label file: {labels['file'] or 'none'} ({labels['rows']} rows).")
    ]
    if labels["error"]:
        parts.append(para(labels["error"], "problem"))
    mismatches = {"images_without_label": "image(s) without a label row", "labels_without_image": "label row(s) without an image"}
    for key, what in mismatches.items():
        found = labels.get(key)
        if found and found["count"]:
            shown = ", ".join(found["examples"]) + (" ..." if found["count"] > len(found["examples"]) else "")
            parts.append(para(f"{found['count']} {what}: {shown}", "problem"))
    return "\n".join(parts)


def _classes(report: Report, stats: dict[str, Any], kind: str) -> None:
    eyes = list(stats["by_eye"])
    rows = [
        [g, NAMES[kind][g], stats["counts"][g], f"{stats['percent'][g]:.2f}%", stats["present"][g]] + [stats["by_eye"][e][g] for e in eyes]
        for g in range(len(stats["counts"]))
    ]
    what, whats = ("grade", "grades") if kind == GRADE else ("quality class", "quality classes")
    agreement = (
        f"{stats['patients']} patients, {stats['patients_with_both_eyes']} with both eyes labelled; "
        f"{stats['discordant_patients']} of those have eyes of different {whats} "
        f"({pct(stats['discordant_patients'], stats['patients_with_both_eyes']):.1f}%), "
        f"by {what} difference: {pairs(stats['discordant_by_difference']) or 'none'}."
    )
    report.section(
        "Class distribution",
        table([what, "name", "labels", "share", "with image", *eyes], rows),
        report.chart("classes.png", lambda fig: charts.classes(fig, stats, kind)),
        para(agreement),
        para(stats["baseline"]["text"]),
    )


def _gallery(report: Report, found: RawFindings, opts: ExploreOptions) -> None:
    if found.gallery is None:
        report.section("Grade gallery", para("Skipped: no usable label file."))
        return
    kind = found.summary["labels"]["kind"]
    sheet = contact_sheet(found.gallery.tiles, found.gallery.captions, cols=opts.per_grade, rows=classes(kind), tile=TILE)
    what = "grade" if kind == GRADE else "quality class"
    note = f"{opts.per_grade} random photo(s) per {what} (seed {opts.seed}), one row per {what}."
    report.section("Grade gallery" if kind == GRADE else "Quality class gallery", para(note), report.picture("gallery.png", sheet))


def _properties(report: Report, found: RawFindings, opts: ExploreOptions) -> None:
    stats = found.summary["properties"]
    parts = [*_property_tables(stats, opts.seed), report.chart("properties.png", lambda fig: charts.properties(fig, found.facts))]
    if stats["failed"]:
        failed = [[f["image"], f["reason"], f["detail"]] for f in stats["failed"][:EXAMPLES]]
        parts += [para(f"Files that could not be measured ({len(stats['failed'])}):"), table(["image", "reason", "detail"], failed)]
    if found.worst:
        captions = [f"{Path(p).stem}: {why}" for p, why, _ in found.worst]
        sheet = contact_sheet([img for _, _, img in found.worst], captions, cols=WORST_COLS, tile=TILE)
        parts += [
            para("Worst-quality photos in the sample (rejected by preprocessing first, then lowest on any metric):"),
            report.picture("worst.png", sheet),
        ]
    report.section("Image properties", *parts)


def _property_tables(stats: dict[str, Any], seed: int) -> list[str]:
    cut = f"{stats['fov_cut_off']} ({pct(stats['fov_cut_off'], stats['measured']):.1f}%)"
    rows = [
        ["sampled", f"{stats['sampled']} of {stats['of']} (seed {seed})"],
        ["measured (field of view found)", stats["measured"]],
        ["unreadable (I/O or JPEG errors)", stats["unreadable"]],
        ["not usable, by reason", pairs(stats["failed_by_reason"]) or "none"],
        ["resolutions (most common first)", pairs(dict(list(stats["resolutions"].items())[:10])) or "none"],
        [f"too dark (brightness < {TOO_DARK:g})", stats["too_dark"]],
        [f"over-exposed (brightness > {OVER_EXPOSED:g})", stats["over_exposed"]],
        ["field cut off by the frame", cut],
    ]
    columns = ("min", "p05", "median", "mean", "p95", "max")
    dist = [[k, *(stats[k][c] if stats[k] else "" for c in columns)] for k in ("file_bytes", *METRICS)]
    return [
        para(
            "Measured on the preprocessing path sightx-shard uses (256 px field crop, no normalisation); "
            "brightness is the mean grey level inside the field of view, sharpness the Laplacian variance."
        ),
        table(["property", "value"], rows),
        table(["metric", *columns], dist),
    ]


# --- shard folders -----------------------------------------------------------------


def _splits(report: Report, summary: dict[str, Any]) -> None:
    splits, labels = summary["splits"], summary["labels"]
    columns = class_labels(labels)
    rows = [[name, info["shards"], info["count"], *_grade_cells(name, info)] for name, info in splits.items()]
    weights = [
        [f"{name} ({kind})", *info["class_weights"][kind]]
        for name, info in splits.items()
        if info["class_weights"]
        for kind in ("inverse", "effective")
    ]
    status = "complete" if summary["complete"] else f"incomplete: {len(summary['pending_shards'])} shard(s) not built"
    labelled = [x for x in summary["shards"] if x["split"] != "test"]
    report.section(
        "Splits and class mix",
        para(
            f"{summary['inputs']} inputs, {summary['written']} samples written; {status}. "
            f"Preprocessing: {pairs(summary['preprocess'] or {})}."
        ),
        table(["split", "shards", "samples", *columns], rows),
        report.chart("splits.png", lambda fig: charts.splits(fig, splits, labels)),
        report.chart("shard_balance.png", lambda fig: charts.shard_balance(fig, labelled, labels)),
        para(
            "Class weights stored per split (the mean weight over a split's samples is 1). sightx-train's "
            "loss balancing uses the train split's inverse weights, which every sample's .json carries."
        ),
        table(["split (weighting)", *columns], weights),
    )


def _grade_cells(split: str, info: dict[str, Any]) -> list[str]:
    """'count (share%)' per class; the unlabelled test split has none."""
    if split == "test":
        return ["-"] * len(info["grades"])
    return [f"{c} ({p:.1f}%)" for c, p in zip(info["grades"], info["percent"])]


def _rejects(report: Report, rejects: dict[str, Any]) -> None:
    by_reason = [[k, v] for k, v in rejects["by_reason"].items()]
    parts = [table(["reason", "images"], by_reason) if by_reason else para("No rejections.")]
    if rejects["examples"]:
        examples = [[r.get("source", ""), r.get("reason", ""), r.get("detail", "")] for r in rejects["examples"]]
        parts += [para(f"First {len(examples)} rows of {rejects_csv.FILE}:"), table(["source", "reason", "detail"], examples)]
    if rejects.get("note"):
        parts.append(para(rejects["note"]))
    report.section(f"Rejected inputs ({rejects['count']})", *parts)


def _before_after(report: Report, found: ShardFindings, opts: ExploreOptions) -> None:
    info, gallery = found.summary["before_after"], found.before_after
    if gallery is None:
        parts = [para(info["note"])]
    else:
        sheet = contact_sheet(gallery.tiles, gallery.captions, cols=gallery.cols, rows=gallery.rows, tile=TILE)
        note = (
            f"Raw photo (left) beside the stored sample (right), {opts.per_grade} per class, seed {opts.seed}; "
            f"raw files from {info['raw']}."
        )
        parts = [para(note), report.picture("before_after.png", sheet)]
    skipped = info["skipped"]
    if skipped["count"]:
        parts.append(para(f"{skipped['count']} malformed sample(s) or shard(s) passed over: {pairs(skipped['by_reason'])}.", "problem"))
        rows = [[s["shard"], s["key"], s["reason"], s["detail"]] for s in skipped["examples"]]
        parts.append(table(["shard", "key", "reason", "detail"], rows))
    report.section("Before and after preprocessing", *parts)


# --- both -------------------------------------------------------------------------


def _gradability(report: Report, g: dict[str, Any], least: list[Shown], kind: str, unit: str, scope: str, note: str | None) -> None:
    """The gradability section of either report: histogram and per-class chart, table, least gradable sheet.
    `unit` is what was scored ("photos", "samples"), `scope` says which of them."""
    if not g["measured"]:
        report.section("Gradability", para(note or f"No {scope} with a gradability score."))
        return
    parts = [
        para(
            f"The rule-based gradability score (0-1: vessel visibility, sharpness, exposure and its uniformity, visible "
            f"field, glare) of {g['measured']} {scope}; below {g['threshold']:g} a photo is flagged possibly "
            "ungradable (sightx-shard --gate gradability=T rejects them, sightx-train --min-gradability T skips them)."
        ),
        report.chart("gradability.png", lambda fig: charts.gradability(fig, g, kind, unit)),
        gradability_table(g, kind),
    ]
    if note:
        parts.append(para(note, "problem"))
    if least:
        sheet = least_gradable_sheet(least, kind)
        parts += [para(f"The least gradable {unit}, lowest score first:"), report.picture("least_gradable.png", sheet)]
    report.section("Gradability", *parts)


def gradability_table(g: dict[str, Any], kind: str) -> str:
    """Per class: scored, below the threshold, their share; then all of them (unlabelled ones included)."""
    rows = [[class_label(kind, r["grade"]), r["measured"], r["below"], f"{r['below_percent']:.1f}%"] for r in g["by_grade"]]
    rows.append(["all", g["measured"], g["below"], f"{g['below_percent']:.1f}%"])
    return table(["grade" if kind == GRADE else "quality class", "scored", f"below {g['threshold']:g}", "share"], rows)


def least_gradable_sheet(least: list[Shown], kind: str) -> np.ndarray:
    """The least gradable photos or samples, captioned with score, class and file name (the path is in summary.json)."""
    captions = [f"{s.score:.2f} | {class_label(kind, s.label)} | {PurePosixPath(s.image).name}" for s, _ in least]
    return contact_sheet([img for _, img in least], captions, cols=WORST_COLS, tile=TILE)
