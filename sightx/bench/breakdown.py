"""Where SightX's time goes: one 1-worker engine run under cProfile, split by preprocessing step.

Steps are matched by the function that does them, so a renamed function shows up as "other"
rather than as a wrong figure. The engine's own share (file reads, plan, tar, sha256, manifest)
is the whole run less preprocess_bytes.
"""

from __future__ import annotations

import cProfile
import pstats
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sightx.bench.engines import EngineRun, run_engine
from sightx.bench.inputs import InputSet
from sightx.bench.isolate import isolated
from sightx.bench.stats import sig

STEPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("decode at reduced DCT scale", (("codec.py", "decode"),)),
    ("field-of-view search", (("fundus.py", "find_fov"),)),
    ("crop + resize", (("fundus.py", "crop_resize"),)),
    ("quality metrics", (("fundus.py", "quality_metrics"),)),
    ("Graham + masks", (("fundus.py", "normalize"), ("fundus.py", "apply_mask"))),
    ("encode", (("codec.py", "encode"),)),
)
ENGINE_STEP = "engine: read, plan, tar, sha256, manifest"


@dataclass(frozen=True)
class BreakdownRun:
    run: EngineRun  # the SightX engine at 1 worker
    inputs: InputSet
    scratch: str


def measure(job: BreakdownRun) -> dict[str, float]:
    """ms per image of each step: an untimed run warms caches, the second is profiled."""
    out = Path(job.scratch)
    run_engine(job.run, job.inputs, out)
    profile = cProfile.Profile()
    with profile:
        run_engine(job.run, job.inputs, out)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    n = len(job.inputs.files)

    def ms(file: str, name: str) -> float:
        return 1000 * sum(v[3] for (path, _, fn), v in stats.items() if path.endswith(file) and fn == name) / n

    steps = {label: sum(ms(f, name) for f, name in funcs) for label, funcs in STEPS}
    preprocess = ms("preprocess.py", "preprocess_bytes")
    steps["other preprocessing"] = max(0.0, preprocess - sum(steps.values()))
    steps[ENGINE_STEP] = ms("engine.py", "run") - preprocess
    return steps


def stage(run: EngineRun, inputs: InputSet, scratch: Path) -> dict[str, Any]:
    """Per-step ms/image and their total, from a fresh process."""
    steps = isolated(measure, BreakdownRun(run, inputs, str(scratch)))
    steps.pop("peak_rss_mb")
    return {"steps_ms": {k: sig(v, 3) for k, v in steps.items()}, "total_ms": sig(sum(steps.values()), 3)}
