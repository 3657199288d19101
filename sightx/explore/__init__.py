"""Look at raw photos (a folder or any archive sightx-shard reads) or shards before training: class balance, galleries, quality.

Writes PNG charts, one self-contained report.html and a summary.json (keys: docs/summary-schema.md);
never modifies its input. Each kind of input is loaded (cheap checks that may refuse it with one
line), analysed (raw.py, shards.py: numbers and pictures, no HTML) and rendered (render.py, report.py,
charts.py). matplotlib is imported only when a chart is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sightx.contracts import manifest as mf
from sightx.explore import manifest_checks, raw, render, shards
from sightx.explore.common import TILE, ExploreError, ExploreOptions, thumbnail
from sightx.explore.raw import class_stats, image_facts, images_folder, property_stats, sample_images
from sightx.explore.render import WORST_COLS
from sightx.explore.report import CHART_DPI, CHART_INCHES, Report
from sightx.explore.shards import check_sample, labelled_samples, raw_root, shard_samples, split_stats
from sightx.explore.summary import format_summary

__all__ = [
    "CHART_DPI",
    "CHART_INCHES",
    "TILE",
    "WORST_COLS",
    "ExploreError",
    "ExploreOptions",
    "check_sample",
    "class_stats",
    "explore",
    "format_summary",
    "image_facts",
    "images_folder",
    "labelled_samples",
    "property_stats",
    "raw_root",
    "sample_images",
    "shard_samples",
    "split_stats",
    "thumbnail",
]


def explore(path: Path, out: Path, opts: ExploreOptions) -> dict[str, Any]:
    """Report on `path` (a shard folder if it holds manifest.json, else raw images: a folder, a zip,
    split parts, the competition zip's train images or a tar) into `out`.

    Returns the summary as written to out/summary.json. Inputs are refused (ExploreError) before
    `out` is touched; `out` is cleared of an earlier report before the long part starts.
    """
    if not path.exists():
        raise ExploreError(f"{path} does not exist")
    report = Report(out)
    if (path / mf.MANIFEST).is_file():
        manifest = manifest_checks.load(path)
        report.prepare()
        return render.shard_report(report, shards.analyse(path, manifest, opts), opts)
    inputs = raw.load(path, opts)
    report.prepare()
    return render.raw_report(report, raw.analyse(inputs, opts), opts)
