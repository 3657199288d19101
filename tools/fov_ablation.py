"""What the field-of-view search costs inside the shard engine (docs evidence for the floor gap).

usage: python tools/fov_ablation.py [ROUNDS] [RAW_FOLDER]

Times, in the same rounds, the decode-only floor and the SightX engine at one worker with its
field search as shipped, cut down to a bare search (Otsu threshold, outline, one least-squares
circle: none of the checks), and replaced by a lookup of the circles the real search finds
(so crops, padding and masks stay the same and only the search's own cost goes). Each run is a
fresh process, measured like `sightx-bench shard` (start-up excluded); the variants take turns.
The photos are the benchmark's own input set: 64 synthetic ones at the EyePACS camera mix, or
the first 64 of RAW_FOLDER (as `sightx-bench --input`). The table also gives the images each
variant wrote: a variant that rejects images (a failed lookup, a bare search finding nothing)
would look faster.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sightx.bench.baselines import Recipe
from sightx.bench.engines import EngineRun
from sightx.bench.inputs import prepare
from sightx.bench.isolate import isolated
from sightx.bench.options import BenchError, BenchOptions
from sightx.bench.shard import Measure, measure, summarise
from sightx.image import circlefit, fov
from sightx.image.preprocess import PreprocessOptions, Rejected, preprocess_bytes

VARIANTS = ("decode floor", "search as shipped", "bare search", "circles looked up")
Circles = dict[tuple[tuple[int, ...], int], fov.Circle | None]


def _key(img: np.ndarray) -> tuple[tuple[int, ...], int]:
    return img.shape, zlib.crc32(img[::97, ::89].tobytes())


def _bare_search(img: np.ndarray) -> fov.Circle | None:
    _, work, sx, sy = fov._working_copy(img)
    _, mask = cv2.threshold(work, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    fit = circlefit.kasa(fov._outline_points(max(contours, key=cv2.contourArea), mask.shape))
    return None if fit is None else fov.Circle(fit[0], fit[1], fit[2] + 0.5).scaled(sx, sy)


@dataclass(frozen=True)
class Job:
    variant: str
    measure: Measure
    circles: Circles


def run_variant(job: Job) -> dict:
    """In the measurement process: swap the search, then measure as the benchmark does."""
    if job.variant == "bare search":
        fov.find_fov = _bare_search
    elif job.variant == "circles looked up":
        fov.find_fov = lambda img: job.circles[_key(img)]
    return measure(job.measure)


def record_circles(files: tuple[str, ...]) -> Circles:
    """The circles the shipped search finds, keyed by the decoded image they were found in."""
    circles: Circles = {}
    search = fov.find_fov

    def recording(img: np.ndarray) -> fov.Circle | None:
        circles[_key(img)] = found = search(img)
        return found

    fov.find_fov = recording
    try:
        for f in files:
            try:
                preprocess_bytes(Path(f).read_bytes(), PreprocessOptions())
            except Rejected:
                pass
    finally:
        fov.find_fov = search
    return circles


def main(rounds: int, opts: BenchOptions, scratch: Path) -> None:
    inputs = prepare(opts, scratch)  # the benchmark's own input set: generated, or linked from --input
    files = inputs.full.files
    circles = record_circles(files)
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    written: dict[str, int] = {}
    for _ in range(rounds):
        for v in VARIANTS:
            engine = "decode-floor" if v == "decode floor" else "sightx"
            run = EngineRun(engine, 1, opts.shard_size_for(1, engine), Recipe())
            raw_result = isolated(run_variant, Job(v, Measure(run, inputs.full, inputs.startup, True, str(scratch / "out")), circles))
            if v != "decode floor":  # it decodes only: nothing to write
                written[v] = raw_result["written"]
            rates[v].append(summarise(raw_result, len(files), len(inputs.startup.files), 1, 1.0)["images_per_s"]["median"])
    floor = statistics.median(rates["decode floor"])
    print(f"{len(files)} photos from {opts.input or 'the synthetic EyePACS camera mix'}, {rounds} round(s), 1 worker")
    print("| variant | images/s (min-max) | time per image / decode floor | images written |\n|---|---|---|---|")
    for v, r in rates.items():
        print(
            f"| {v} | {statistics.median(r):.1f} ({min(r):.1f}-{max(r):.1f}) "
            f"| {floor / statistics.median(r):.3f}x | {written.get(v, '-')} |"
        )


if __name__ == "__main__":
    try:
        bench_opts = BenchOptions(stages=("shard",), input=sys.argv[2] if len(sys.argv) > 2 else None)
        with tempfile.TemporaryDirectory() as tmp:
            main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, bench_opts, Path(tmp))
    except BenchError as e:
        sys.exit(f"fov_ablation: {e}")
