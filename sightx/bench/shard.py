"""Shard stage: images/s and MB/s of every engine at 1 and N workers on the same files.

Throughput is steady state: each repetition, a fresh process, also runs the engine on one image
per worker (one shard each, so pools start as in the full run), and the full run's extra images
over its extra time is the rate. Start-up (pool spawn, imports; about 3 s for img2dataset) is
reported apart.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sightx.bench.baselines import Recipe
from sightx.bench.engines import (
    DASK_ENGINES,
    ENGINES,
    LABELS,
    OUTPUTS,
    EngineRun,
    find_img2dataset,
    run_engine,
)
from sightx.bench.inputs import Inputs, InputSet
from sightx.bench.isolate import isolated
from sightx.bench.options import EYEPACS_IMAGES, BenchError, BenchOptions
from sightx.bench.stats import sig, spread

_FILL_SAMPLES = 16  # outputs checked for how much of the frame the retina fills
_DARK, _WHITE = 15, 250  # below: background or mask; above: white padding
CLUSTER_WORKERS = (16, 64, 256)  # worker cores the Dask projection is stated for


@dataclass(frozen=True)
class Measure:
    """One repetition of one engine at one worker count: what its process needs."""

    run: EngineRun
    full: InputSet
    startup: InputSet
    warmup: bool
    scratch: str


def measure(m: Measure) -> dict[str, Any]:
    """An untimed start-up run (imports, lazy set-up), then a timed start-up run and full run."""
    out = Path(m.scratch)
    with _cluster(m.run) as job:
        startup = replace(job, shard_size=1)  # one shard per image: every worker starts
        if m.warmup:
            run_engine(startup, m.startup, out)
        startup_s = _timed(run_engine, startup, m.startup, out)[0]
        full_s, written = _timed(run_engine, job, m.full, out)
    fill = field_fill(out)
    shutil.rmtree(out, ignore_errors=True)
    return {"full_s": [full_s], "startup_s": [startup_s], "written": written, "field_fill": fill}


@contextlib.contextmanager
def _cluster(run: EngineRun) -> Iterator[EngineRun]:
    """The Dask engine's runs share one LocalCluster, as `--executor dask-local` starts it: its start
    (seconds, and varying by seconds) would otherwise swamp the per-image figures it is compared on."""
    if run.engine != "sightx-dask":
        yield run
        return
    import distributed

    with distributed.LocalCluster(
        n_workers=run.workers, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as cluster:
        yield replace(run, scheduler=cluster.scheduler_address)


def _timed(fn: Callable[..., int], *args: Any) -> tuple[float, int]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def field_fill(out: Path) -> float | None:
    """Median width of the visible retina over the output side: how much of the frame is retina.

    Counted as columns with enough pixels that are neither background nor padding (img2dataset
    pads with white), so it reads normalised and raw-looking outputs alike.
    """
    from sightx.image import codec

    widths = []
    for jpeg in _some_jpegs(out, _FILL_SAMPLES):
        img, _ = codec.decode(jpeg)
        level = img.max(axis=2)
        per_column = ((level > _DARK) & (level < _WHITE)).sum(axis=0)
        cols = np.flatnonzero(per_column >= img.shape[0] / 20)  # ignores JPEG ringing at padding edges
        if cols.size:
            widths.append((cols[-1] - cols[0] + 1) / img.shape[1])
    return round(statistics.median(widths), 3) if widths else None


def _some_jpegs(out: Path, n: int) -> list[bytes]:
    found: list[bytes] = []
    for path in sorted(out.rglob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                if member.name.endswith(".jpg") and len(found) < n:
                    found.append(tar.extractfile(member).read())  # type: ignore[union-attr]
    return found


def summarise(raw: dict[str, Any], n: int, k: int, workers: int, mb: float) -> dict[str, Any]:
    """Steady-state rate (n - k extra images over the extra time) with the run's other facts."""
    startup = statistics.median(raw["startup_s"])
    extra = [t - startup for t in raw["full_s"]]
    excluded = min(extra) > 0  # noise can swamp tiny --quick runs: fall back to end-to-end
    rates = [(n - k) / e for e in extra] if excluded else [n / t for t in raw["full_s"]]
    rate = statistics.median(rates)
    return {
        "workers": workers,
        "images_per_s": spread(rates),
        "mb_per_s": sig(rate * mb / n),
        "end_to_end_images_per_s": sig(n / statistics.median(raw["full_s"])),
        "startup_s": round(max(0.0, startup - k / rate), 2),  # less the k images it also processed
        "startup_excluded": excluded,
        "written": raw["written"],
        "field_fill": raw["field_fill"],
        "peak_rss_mb": raw["peak_rss_mb"],
    }


def stage(opts: BenchOptions, inputs: Inputs, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Every engine at 1 and --workers workers; errors become rows.

    Each repetition is a fresh process and the repetitions go round every engine in turn, so a
    ratio compares runs made minutes, not a whole stage, apart: on a shared machine the speed of
    one process (its core, its neighbours) varies by several percent from the next.
    """
    on_dask = opts.executor == "dask-local"
    names = DASK_ENGINES if on_dask else ENGINES
    recipe = Recipe(opts.size, opts.quality)
    exe = find_img2dataset(opts.img2dataset)
    n, k, mb = len(inputs.full.files), len(inputs.startup.files), inputs.full.bytes() / 1e6
    jobs = {
        (engine, w): Measure(
            EngineRun(engine, w, opts.shard_size_for(w, engine), recipe, exe),
            inputs.full,
            inputs.startup,
            opts.warmup,
            str(work / f"out-{engine}-{w}"),
        )
        for engine in names
        for w in opts.worker_counts()
    }
    raw: dict[tuple[str, int], dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for rep in range(1, opts.reps + 1):
        for (engine, w), m in jobs.items():
            if engine in errors:
                continue
            try:
                _merge(raw.setdefault((engine, w), {}), isolated(measure, m))
            except BenchError as e:  # its other repetitions go too: a flaky engine is reported as failed
                errors[engine] = str(e)
                log(f"shard  {LABELS[engine]}: not available: {e}")
        log(f"shard  repetition {rep}/{opts.reps} of every engine done")
    engines: dict[str, Any] = {}
    for engine in names:
        row: dict[str, Any] = {"label": LABELS[engine], "output": OUTPUTS[engine], "runs": {}}
        if engine in errors:
            row["error"] = errors[engine]
        else:
            for w in opts.worker_counts():
                result = summarise(raw[(engine, w)], n, k, w, mb)
                row["runs"][str(w)] = result
                log(f"shard  {LABELS[engine]:<20} {w} worker(s): {result['images_per_s']['median']} images/s")
        engines[engine] = row
    compared = compare(engines, opts.worker_counts())
    dask = {"dask": dask_figures(engines, compared, opts.worker_counts(), inputs.full.bytes() / 1e6 / n)} if on_dask else {}
    return {
        "input": inputs.describe(),
        # The profile is the pool's and costs a run of its own: left out where the question is Dask's overhead.
        "breakdown": {} if on_dask else _breakdown(opts, inputs, work, log),
        "shard_size": {str(w): opts.shard_size_for(w) for w in opts.worker_counts()},
        "sightx_shard_size": {str(w): opts.shard_size_for(w, "sightx") for w in opts.worker_counts()},
        "worker_counts": list(opts.worker_counts()),
        "recipe": {"size": opts.size, "quality": opts.quality, "normalize": "graham"},
        "engines": engines,
        **compared,
        **dask,
    }


def _merge(into: dict[str, Any], rep: dict[str, Any]) -> None:
    """Add one process's repetition to an engine's figures: times pooled, memory its peak."""
    for key in ("full_s", "startup_s"):
        into.setdefault(key, []).extend(rep[key])
    into["peak_rss_mb"] = max(into.get("peak_rss_mb", 0.0), rep["peak_rss_mb"])
    into["written"], into["field_fill"] = rep["written"], rep["field_fill"]


def _breakdown(opts: BenchOptions, inputs: Inputs, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from sightx.bench import breakdown

    run = EngineRun("sightx", 1, opts.shard_size_for(1, "sightx"), Recipe(opts.size, opts.quality))
    try:
        result = breakdown.stage(run, inputs.full, work / "out-profile")
    except BenchError as e:
        return {"error": str(e)}
    log(f"shard  SightX profiled: {result['total_ms']} ms/image at 1 worker under cProfile")
    return result


def compare(engines: dict[str, Any], counts: tuple[int, ...]) -> dict[str, Any]:
    """SightX's ratio to each engine, scaling efficiency, the floor multiple and the projections."""
    top = counts[-1]
    rates = {e: {w: row["runs"][str(w)]["images_per_s"]["median"] for w in counts} for e, row in engines.items() if "error" not in row}
    scaling = {e: r[top] / (top * r[1]) for e, r in rates.items()}
    sightx = rates.get("sightx")
    floor = rates.get("decode-floor")
    ratios = {e: {str(w): sig(sightx[w] / r[w], 3) for w in counts} for e, r in rates.items()} if sightx else {}
    return {
        "scaling_efficiency": {e: sig(s, 3) for e, s in scaling.items()} if top > 1 else {},
        "sightx_ratio": ratios,
        # SightX's time per image as a multiple of only decoding it: the inverse of the rate ratio.
        "decode_floor_multiple": {str(w): sig(floor[w] / sightx[w], 3) for w in counts} if sightx and floor else {},
        "projection": {
            "images": EYEPACS_IMAGES,
            "basis": "a projection, not a measurement: 1-worker images/s x workers x "
            + (f"the scaling efficiency measured at {top} workers" if top > 1 else "100% scaling (only 1 worker measured)"),
            "hours": {e: {str(w): sig(EYEPACS_IMAGES / (r[1] * w * scaling[e]) / 3600, 3) for w in (2, 10)} for e, r in rates.items()},
        },
    }


def dask_figures(engines: dict[str, Any], compared: dict[str, Any], counts: tuple[int, ...], mb_per_image: float) -> dict[str, Any]:
    """Dask against the pool at the same worker counts, and what a cluster of it would do.

    Overhead per image is Dask's time per image over the pool's, less 1. The projection is the rate
    per worker core (1 Dask worker) x workers x the scaling efficiency measured here; every image is
    read once from the shared filesystem, so a cluster also needs its read rate in MB/s from it.
    """
    failed = [engines[e]["error"] for e in DASK_ENGINES if "error" in engines[e]]
    if failed:
        return {"error": failed[0]}
    pool, dask = ({w: engines[e]["runs"][str(w)]["images_per_s"]["median"] for w in counts} for e in DASK_ENGINES)
    top = counts[-1]
    efficiency = compared["scaling_efficiency"].get("sightx-dask", 1.0) if top > 1 else 1.0
    per_core = dask[1]
    cluster = {
        str(workers): {
            "images_per_s": sig(per_core * workers * efficiency),
            "read_mb_per_s": sig(per_core * workers * efficiency * mb_per_image),
            "eyepacs_minutes": sig(EYEPACS_IMAGES / (per_core * workers * efficiency) / 60),
        }
        for workers in CLUSTER_WORKERS
    }
    return {
        "overhead_per_image": {str(w): sig(pool[w] / dask[w] - 1, 3) for w in counts},
        "images_per_s_per_core": {str(w): sig(dask[w] / w) for w in counts},
        "scaling_efficiency": sig(efficiency, 3),
        "input_mb_per_image": sig(mb_per_image),
        "read_mb_per_s_per_core": sig(per_core * mb_per_image),
        "images_per_s_per_gb_s": sig(1000 / mb_per_image),  # the filesystem's bound: images/s per GB/s it can serve
        "projection": {
            "basis": "a projection, not a measurement: images/s per worker core (1 Dask worker) x workers x "
            + (f"the Dask scaling efficiency measured at {top} workers" if top > 1 else "100% scaling (only 1 worker measured)"),
            "workers": cluster,
        },
    }
