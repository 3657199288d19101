"""A shard folder's manifest as sightx-explore reads it: every field it uses checked first (one-line
ExploreError naming the field), then per-split statistics and the rejects by reason."""

from __future__ import annotations

import csv
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from sightx.contracts import manifest as mf
from sightx.contracts import rejects as rejects_csv
from sightx.errors import describe
from sightx.explore.common import EXAMPLES, ExploreError, pct

_MISSING = object()


def load(path: Path) -> dict[str, Any]:
    """The manifest, with every field this report reads checked; ExploreError otherwise."""
    try:
        manifest = mf.read(path)
    except mf.ManifestError as e:
        raise ExploreError(str(e)) from None
    check_manifest(manifest, path / mf.MANIFEST)
    return manifest


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_counts(v: object, n: int) -> bool:
    return isinstance(v, list) and len(v) == n and all(_is_count(c) for c in v)


def _is_count_map(v: object) -> bool:
    return isinstance(v, dict) and all(_is_count(c) for c in v.values())


def _is_weights(v: object, n: int) -> bool:
    return isinstance(v, list) and len(v) == n and all(isinstance(w, int | float) and not isinstance(w, bool) for w in v)


def _field_error(where: Path, name: str, value: object, want: str) -> ExploreError:
    if value is _MISSING:
        return ExploreError(f"{where}: manifest field {name} is missing")
    shown = repr(value)
    return ExploreError(f"{where}: manifest field {name} is {shown[:60] + '...' if len(shown) > 60 else shown}, not {want}")


def check_manifest(m: dict[str, Any], where: Path) -> None:
    """The fields split_stats, rejects and the charts read, with the types they need: per-class lists
    as long as the set's label kind has classes (5 grades, 3 quality classes)."""
    n = mf.num_classes(m)

    def need(container: dict[str, Any], key: str, name: str, ok: Any, want: str, optional: bool = False) -> None:
        value = container.get(key, _MISSING)
        if (value is _MISSING or value is None) and optional:
            return
        if not ok(value):
            raise _field_error(where, name, value, want)

    counts, per_class = "a non-negative integer", f"a list of {n} non-negative integers"
    is_counts, is_weights = partial(_is_counts, n=n), partial(_is_weights, n=n)
    need(m, "options", "options", lambda v: isinstance(v, dict), "an object")
    need(m["options"], "preprocess", "options.preprocess", lambda v: isinstance(v, dict), "an object", optional=True)
    need(m, "summary", "summary", lambda v: isinstance(v, dict), "an object", optional=True)
    s = m.get("summary") or {}
    for key in ("inputs", "written", "rejected"):
        need(s, key, f"summary.{key}", _is_count, counts, optional=True)
    need(s, "rejected_by_reason", "summary.rejected_by_reason", _is_count_map, "an object of non-negative integers", optional=True)
    need(m, "splits", "splits", lambda v: isinstance(v, dict), "an object")
    for name, info in m["splits"].items():
        need(m["splits"], name, f"splits.{name}", lambda v: isinstance(v, dict), "an object")
        for key in ("shards", "count"):
            need(info, key, f"splits.{name}.{key}", _is_count, counts)
        need(info, "grades", f"splits.{name}.grades", is_counts, per_class)
        weights = f"an object of two lists of {n} numbers"
        need(info, "class_weights", f"splits.{name}.class_weights", lambda v: isinstance(v, dict), weights, optional=True)
        for kind in ("inverse", "effective") if info.get("class_weights") else ():
            need(info["class_weights"], kind, f"splits.{name}.class_weights.{kind}", is_weights, f"a list of {n} numbers")
    for i, record in enumerate(m["shards"]):
        if record.get("done"):
            need(record, "count", f"shards[{i}].count", _is_count, counts)
            need(record, "grades", f"shards[{i}].grades", is_counts, per_class)


def split_stats(manifest: dict[str, Any]) -> dict[str, Any]:
    """Per split: shards, samples, grade counts and shares, and the class weights stored for training."""
    return {
        name: {
            "shards": info["shards"],
            "count": info["count"],
            "grades": info["grades"],
            "percent": [pct(c, sum(info["grades"])) for c in info["grades"]],
            "class_weights": info.get("class_weights"),
        }
        for name, info in manifest["splits"].items()
    }


def rejects(path: Path, manifest_summary: dict[str, Any]) -> dict[str, Any]:
    """Rejections by reason from the manifest, with example rows from rejects.csv when it can be read."""
    out: dict[str, Any] = {
        "count": manifest_summary.get("rejected", 0),
        "by_reason": manifest_summary.get("rejected_by_reason", {}),
    }
    try:
        out["examples"] = [asdict(r) for r in rejects_csv.read(path, EXAMPLES)]
    except OSError:
        out["examples"] = []
        out["note"] = f"{rejects_csv.FILE} not found (the shard run has not finished)"
    except csv.Error as e:
        out["examples"] = []
        out["note"] = f"{rejects_csv.FILE} unreadable ({describe(e)})"
    return out
