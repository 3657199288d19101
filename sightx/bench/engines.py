"""One run of each shard engine over a Kaggle-layout folder, as a picklable job.

Every engine reads the same files and writes WebDataset tars of `shard_size` samples into `out`;
a run returns how many images it wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sightx.bench.baselines import Recipe, decode_floor, naive_opencv, naive_pil
from sightx.bench.inputs import InputSet
from sightx.bench.options import BenchError
from sightx.bench.tars import TarOut

ENGINES = ("sightx", "decode-floor", "naive-pil", "opencv", "img2dataset")
DASK_ENGINES = ("sightx", "sightx-dask")  # --executor dask-local: the same engine, its pool against a LocalCluster
LABELS = {
    "sightx": "SightX engine",
    "sightx-dask": "SightX on Dask (LocalCluster)",
    "decode-floor": "decode-only floor",
    "naive-pil": "naive PIL + Pool",
    "opencv": "OpenCV + Pool",
    "img2dataset": "img2dataset",
}
OUTPUTS = {
    "sightx": "field-of-view crop, Graham, mask, q95 4:2:0",
    "sightx-dask": "the same bytes as SightX's pool",
    "decode-floor": "none (decode at the engine's DCT scale only)",
    "naive-pil": "bbox crop, LANCZOS, Graham, mask, q95 4:2:0",
    "opencv": "bbox crop, INTER_AREA, Graham, mask, q95 4:2:0",
    "img2dataset": "no crop, border resize, no normalisation, q95 4:2:0",
}


@dataclass(frozen=True)
class EngineRun:
    engine: str
    workers: int
    shard_size: int
    recipe: Recipe
    img2dataset: str | None = None
    scheduler: str | None = None  # sightx-dask: the running cluster's address (bench.shard.measure starts one)


def run_engine(job: EngineRun, inputs: InputSet, out: Path) -> int:
    """Run `job.engine` once over `inputs` into a fresh `out`; returns images written."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return _RUNNERS[job.engine](job, inputs, out)


def _sightx(job: EngineRun, inputs: InputSet, out: Path) -> int:
    """The sightx-shard code path with the CLI's options: its pool, or `--executor dask` on `job.scheduler`."""
    from sightx.image.preprocess import PreprocessOptions
    from sightx.shard import ShardOptions, run

    pre = PreprocessOptions(size=job.recipe.size, quality=job.recipe.quality)
    opts = ShardOptions(
        preprocess=pre,
        shard_size=job.shard_size,
        unlabeled=not inputs.labelled,
        workers=job.workers,
        progress=False,
        executor="dask" if job.scheduler else "pool",
        scheduler=job.scheduler,
    )
    return run(Path(inputs.train), out, opts)["summary"]["written"]


def _sightx_dask(job: EngineRun, inputs: InputSet, out: Path) -> int:
    if job.scheduler is None:
        raise BenchError("the Dask engine runs on a cluster its measurement starts (bench.shard.measure)")
    return _sightx(job, inputs, out)


def _pooled(fn: Callable[..., bytes], job: EngineRun, inputs: InputSet, out: Path) -> int:
    """A per-file function over a process pool with the same worker count, results into tars."""
    from sightx.parallel.pool import ordered_map

    with TarOut(out, job.shard_size) as tars:
        for path, jpeg in zip(inputs.files, ordered_map(partial(fn, recipe=job.recipe), inputs.files, job.workers), strict=True):
            if jpeg:
                tars.add([(f"{Path(path).stem}.jpg", jpeg)])
    return tars.count


def _img2dataset(job: EngineRun, inputs: InputSet, out: Path) -> int:
    """img2dataset's CLI on file:// URLs, at its usual settings and the engine's size and quality."""
    exe = job.img2dataset
    if exe is None:
        raise BenchError("not installed (pip install img2dataset, or pass --img2dataset PATH)")
    if shutil.which(exe) is None:
        raise BenchError(f"{exe} is not an executable")
    urls = out / "urls.txt"
    urls.write_text("".join(Path(f).resolve().as_uri() + "\n" for f in inputs.files))
    cmd = [
        exe,
        "--url_list",
        str(urls),
        "--input_format",
        "txt",
        "--output_folder",
        str(out / "shards"),
        "--output_format",
        "webdataset",
        "--image_size",
        str(job.recipe.size),
        "--resize_mode",
        "border",
        "--processes_count",
        str(job.workers),
        "--thread_count",
        "1",
        "--encode_quality",
        str(job.recipe.quality),
        "--number_sample_per_shard",
        str(job.shard_size),
        "--enable_wandb",
        "False",
    ]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"img2dataset exited {done.returncode}: {last}")
    stats = [json.loads(p.read_text()) for p in (out / "shards").glob("*_stats.json")]
    written = sum(s["successes"] for s in stats)
    if written == 0:
        errors = sorted({k for s in stats for k in s.get("status_dict", {}) if k != "success"})
        raise BenchError(f"img2dataset wrote none of {len(inputs.files)} images ({'; '.join(errors) or 'no stats'})")
    return written


_RUNNERS: dict[str, Callable[[EngineRun, InputSet, Path], int]] = {
    "sightx": _sightx,
    "sightx-dask": _sightx_dask,
    "decode-floor": partial(_pooled, decode_floor),
    "naive-pil": partial(_pooled, naive_pil),
    "opencv": partial(_pooled, naive_opencv),
    "img2dataset": _img2dataset,
}


def find_img2dataset(explicit: str | None) -> str | None:
    """--img2dataset, else on PATH, else beside this interpreter (a venv's bin/)."""
    if explicit:
        return explicit
    found = shutil.which("img2dataset")
    if found:
        return found
    beside = Path(sys.executable).parent / "img2dataset"
    return str(beside) if beside.is_file() else None
