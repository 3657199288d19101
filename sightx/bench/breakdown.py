"""Where SightX's time goes: preprocess_bytes under cProfile on the bench files, split by step.

Steps are matched by the function that does them, so a renamed function shows up as "other"
rather than as a wrong figure. The engine's own share (file reads, tar, sha256, manifest) is its
measured time per image less the profiled preprocessing.
"""

from __future__ import annotations

import contextlib
import cProfile
import pstats
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sightx.bench.isolate import isolated

STEPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("decode at reduced DCT scale", (("codec.py", "decode"),)),
    ("field-of-view search", (("fundus.py", "find_fov"),)),
    ("crop + resize", (("fundus.py", "square_crop"), ("fundus.py", "resize"))),
    ("quality metrics", (("fundus.py", "quality_metrics"),)),
    ("Graham + masks", (("fundus.py", "normalize"), ("fundus.py", "apply_mask"), ("fundus.py", "mask_outside"))),
    ("encode", (("codec.py", "encode"),)),
)


@dataclass(frozen=True)
class BreakdownRun:
    files: tuple[str, ...]
    size: int
    quality: int


def measure(run: BreakdownRun) -> dict[str, Any]:
    """ms per image of each step, one thread, files already in memory."""
    import cv2

    from sightx.preprocess import PreprocessOptions, Rejected, preprocess_bytes

    cv2.setNumThreads(1)
    opts = PreprocessOptions(size=run.size, quality=run.quality)
    data = [Path(f).read_bytes() for f in run.files]
    profile = cProfile.Profile()
    for timed in (False, True):  # the first pass warms caches and lazy imports
        with profile if timed else contextlib.nullcontext():
            for d in data:
                with contextlib.suppress(Rejected):  # rejected images cost the engine time too
                    preprocess_bytes(d, opts)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]

    def ms(file: str, name: str) -> float:
        seconds = sum(v[3] for (path, _, fn), v in stats.items() if path.endswith(file) and fn == name)
        return 1000 * seconds / len(data)

    steps = {label: sum(ms(f, n) for f, n in funcs) for label, funcs in STEPS}
    total = ms("preprocess.py", "preprocess_bytes")
    steps["other preprocessing"] = max(0.0, total - sum(steps.values()))
    return {"steps_ms": steps, "preprocess_ms": total}


def stage(files: tuple[str, ...], size: int, quality: int, engine_rate: float | None) -> dict[str, Any]:
    """Per-step ms/image, plus the engine's own share when its 1-worker rate is known."""
    raw = isolated(measure, BreakdownRun(files, size, quality))
    steps = {k: round(v, 2) for k, v in raw["steps_ms"].items()}
    result: dict[str, Any] = {"steps_ms": steps, "preprocess_ms": round(raw["preprocess_ms"], 2)}
    if engine_rate:
        engine_ms = 1000 / engine_rate
        # cProfile slows the profiled code a little, so this share can read low (never below 0).
        steps["engine: read, tar, sha256, manifest"] = round(max(0.0, engine_ms - raw["preprocess_ms"]), 2)
        result["engine_ms"] = round(engine_ms, 2)
    return result
