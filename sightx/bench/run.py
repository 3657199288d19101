"""Run the selected stages on one scratch folder and collect one JSON-ready result."""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from sightx.bench import inputs, report
from sightx.bench.options import BenchError, BenchOptions
from sightx.parallel.pool import default_workers
from sightx.shard.executors import require_dask

FORMAT = "sightx-bench"
VERSION = 1
_PACKAGES = ("sightx", "numpy", "opencv-python-headless", "pillow", "simplejpeg", "torch", "torchvision", "webdataset")


def run_bench(opts: BenchOptions, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Measure every stage in opts.stages; errors of one engine become a row, not a failure."""
    from sightx.bench import load, serve, shard, sources, train

    if opts.executor != "pool":
        require_dask()  # before minutes of input generation
    start = time.perf_counter()
    result: dict[str, Any] = {"format": FORMAT, "version": VERSION, "machine": machine(), "options": opts.to_dict()}
    with _scratch(opts.work) as work:
        if {"shard", "load", "sources"} & set(opts.stages):
            data = inputs.prepare(opts, work)
            log(f"input  {len(data.full.files)} images, {data.full.bytes() / 1e6:.1f} MB in {data.full.raw}")
            if "shard" in opts.stages:
                result["shard"] = shard.stage(opts, data, work, log)
            if "load" in opts.stages:
                result["load"] = load.stage(opts, data, work, log)
            if "sources" in opts.stages:
                result["sources"] = sources.stage(opts, data, work, log)
        if "train" in opts.stages:
            result["train"] = train.stage(opts, result.get("load"), log)
        if "serve" in opts.stages:
            result["serve"] = serve.stage(opts, work, log)
    result["machine"]["load_average_end"] = _load_average()
    result["targets"] = report.targets(result)
    result["elapsed_s"] = round(time.perf_counter() - start, 1)
    return result


@contextlib.contextmanager
def _scratch(work: str | None) -> Iterator[Path]:
    """--work is kept for inspection; otherwise a temporary folder, removed afterwards."""
    if work is not None:
        path = Path(work)
        if path.exists() and any(path.iterdir()):
            raise BenchError(f"--work {path} is not empty: choose a new or empty folder")
        path.mkdir(parents=True, exist_ok=True)
        yield path
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
        # Other work on the machine slows every engine, the scaling figures most.
        "load_average_start": _load_average(),
    }


def _load_average() -> float | None:
    """1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
