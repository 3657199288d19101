"""Comparing shard outputs across runs: everything in the folder, the manifest without its timing block."""

from __future__ import annotations

import json
from pathlib import Path

from sightx.contracts import manifest as mf


def stable_outputs(out: Path) -> dict[str, bytes]:
    """File name -> bytes for every file in `out`, with the manifest's `run` (timings) removed."""
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    m = json.loads(files.pop(mf.MANIFEST))
    m.pop("run")
    files[mf.MANIFEST] = json.dumps(m, sort_keys=True).encode()
    return files
