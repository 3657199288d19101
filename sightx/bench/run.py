"""Run the selected stages on one scratch folder and collect one JSON-ready result."""

from __future__ import annotations

import contextlib
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from sightx.bench import inputs, report
from sightx.bench.options import BenchOptions
from sightx.pool import default_workers

FORMAT = "sightx-bench"
VERSION = 1
_PACKAGES = ("sightx", "numpy", "opencv-python-headless", "pillow", "simplejpeg", "torch", "torchvision", "webdataset")


def run_bench(opts: BenchOptions, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Measure every stage in opts.stages; errors of one engine become a row, not a failure."""
    from sightx.bench import load, shard, train

    start = time.perf_counter()
    result: dict[str, Any] = {"format": FORMAT, "version": VERSION, "machine": machine(), "options": opts.to_dict()}
    with _scratch(opts.work) as work:
        data = inputs.prepare(opts, work) if {"shard", "load"} & set(opts.stages) else None
        if data is not None:
            log(f"input  {len(data.full.files)} images, {data.full.bytes() / 1e6:.1f} MB in {data.full.raw}")
        if "shard" in opts.stages:
            result["shard"] = shard.stage(opts, data, work, log)  # type: ignore[arg-type]
        if "load" in opts.stages:
            result["load"] = load.stage(opts, data, work, log)  # type: ignore[arg-type]
        if "train" in opts.stages:
            result["train"] = train.stage(opts, result.get("load"), log)
    result["targets"] = report.targets(result)
    result["elapsed_s"] = round(time.perf_counter() - start, 1)
    return result


@contextlib.contextmanager
def _scratch(work: str | None) -> Iterator[Path]:
    """--work is kept for inspection; otherwise a temporary folder, removed afterwards."""
    if work is not None:
        Path(work).mkdir(parents=True, exist_ok=True)
        yield Path(work)
        return
    with tempfile.TemporaryDirectory(prefix="sightx-bench-") as tmp:
        yield Path(tmp)


def machine() -> dict[str, Any]:
    """What the numbers depend on besides the code."""
    versions = {}
    for name in _PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {
        "cpus": default_workers(),
        "platform": f"{platform.system()} {platform.machine()}",
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "versions": versions,
    }
