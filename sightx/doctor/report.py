"""The checklist as text (one line per check, the fix under it) or as JSON."""

from __future__ import annotations

import json
import sys
from collections import Counter

from sightx.doctor.check import FAIL, OK, WARN, Check

_MARK = {OK: "ok  ", WARN: "warn", FAIL: "FAIL"}


def text(results: list[Check]) -> str:
    lines = [f"sightx-doctor: {sys.executable} (Python {sys.version.split()[0]})"]
    section = None
    for c in results:
        if c.section != section:
            section = c.section
            lines.append(f"\n{section}")
        lines.append(f"  {_MARK.get(c.status, c.status)}  {c.name}: {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"        fix: {c.fix}")
    counts = Counter(c.status for c in results)
    lines.append(f"\n{counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail")
    return "\n".join(lines) + "\n"


def as_json(results: list[Check]) -> str:
    counts = Counter(c.status for c in results)
    doc = {
        "python": sys.executable,
        "ok": counts[FAIL] == 0,
        "counts": {s: counts[s] for s in (OK, WARN, FAIL)},
        "checks": [c.as_dict() for c in results],
    }
    return json.dumps(doc, indent=1, default=str) + "\n"
