"""EyeQ-style quality labels for sightx-synth output, for the tests that build quality shards."""

from __future__ import annotations

import csv
from pathlib import Path


def eyeq_csv(raw: Path, indexed: bool = True) -> dict[str, int]:
    """EyeQ's Label_EyeQ_train.csv from the generator's truth: Reject for its ungradable shots (too dark,
    blurred and hazy), Usable for under-exposed ones, Good otherwise. Returns image id -> class."""
    rows = list(csv.DictReader((raw / "synthTruth.csv").open()))
    quality = {Path(r["path"]).stem: 2 if r["ungradable"] else 1 if float(r["gain"]) < 0.6 else 0 for r in rows}
    lines = [",image,quality,DR_grade" if indexed else "image,quality"]
    for i, r in enumerate(rows):
        name, q = Path(r["path"]).name, quality[Path(r["path"]).stem]
        lines.append(f"{i},{name},{q},{r['grade']}" if indexed else f"{name},{q}")
    (raw / "Label_EyeQ_train.csv").write_text("\n".join(lines) + "\n")
    return quality
