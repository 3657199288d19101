"""Where SightX's time goes: one 1-worker engine run under cProfile, split by preprocessing step.

Steps are the functions that do them, named here as objects: the profile is matched on each
function's own code location, so a renamed or moved function fails at import instead of
silently becoming "other". The engine's own share (file reads, plan, tar, sha256, manifest)
is the whole run less preprocess_bytes.
"""

from __future__ import annotations

import cProfile
import inspect
import pstats
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sightx.bench.engines import EngineRun, run_engine
from sightx.bench.inputs import InputSet
from sightx.bench.isolate import isolated
from sightx.bench.stats import sig
from sightx.image import codec, fov, fundus
from sightx.image.preprocess import preprocess_bytes
from sightx.shard import engine

STEPS: tuple[tuple[str, tuple[Callable[..., Any], ...]], ...] = (
    ("decode at reduced DCT scale", (codec.decode,)),
    ("field-of-view search", (fov.find_fov,)),
    ("crop + resize", (fundus.crop_resize,)),
    ("field measures", (fundus.field_measures,)),
    ("Graham + masks", (fundus.normalize, fundus.apply_mask)),
    ("encode", (codec.encode,)),
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

    def ms(fn: Callable[..., Any]) -> float:
        code = inspect.unwrap(fn).__code__
        key = (code.co_filename, code.co_firstlineno, code.co_name)
        return 1000 * (stats[key][3] if key in stats else 0.0) / n

    steps = {label: sum(ms(f) for f in funcs) for label, funcs in STEPS}
    preprocess = ms(preprocess_bytes)
    steps["other preprocessing"] = max(0.0, preprocess - sum(steps.values()))
    steps[ENGINE_STEP] = ms(engine.run) - preprocess
    return steps


def stage(run: EngineRun, inputs: InputSet, scratch: Path) -> dict[str, Any]:
    """Per-step ms/image and their total, from a fresh process."""
    steps = isolated(measure, BreakdownRun(run, inputs, str(scratch)))
    steps.pop("peak_rss_mb")
    return {"steps_ms": {k: sig(v, 3) for k, v in steps.items()}, "total_ms": sig(sum(steps.values()), 3)}
