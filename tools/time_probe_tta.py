"""docs/evaluation.md timings, interleaved in one process so a shared machine's load falls on every variant
alike: one training step (batch 32, 96 px, resnet18) full vs linear probe, and the model time per photo of
each TTA mode (batch 32, 96 px). Prints medians of wall and process CPU time."""

from __future__ import annotations

import statistics
import sys
import time

import torch

from sightx.inference import tta
from sightx.models.factory import build_model
from sightx.train.config import TrainConfig
from sightx.train.loop import train_step
from sightx.train.trainer import build_step

REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 7
torch.manual_seed(0)
images, grades, weights = torch.randint(0, 255, (32, 3, 96, 96), dtype=torch.uint8), torch.randint(0, 5, (32,)), torch.ones(32)
steps = {f: build_step(TrainConfig(shards="x", arch="resnet18", freeze=f, amp="off"), torch.device("cpu"))[1] for f in ("none", "backbone")}
model = build_model("resnet18", "classify").eval()
x = torch.randn(32, 3, 96, 96)
timings: dict[str, list[tuple[float, float]]] = {}


def timed(name: str, fn) -> None:  # type: ignore[no-untyped-def]
    w, c = time.perf_counter(), time.process_time()
    fn()
    timings.setdefault(name, []).append((time.perf_counter() - w, time.process_time() - c))


for rep in range(REPS + 1):
    for f, ctx in steps.items():
        timed(f"train step, freeze {f}", lambda ctx=ctx: train_step(ctx, images, grades, weights))
    for mode in tta.TTA_MODES:
        with torch.inference_mode():
            timed(f"grade, tta {mode}", lambda mode=mode: tta.averaged(lambda v: model(v).softmax(1), x, mode))
    if rep == 0:
        timings.clear()  # warm-up
for name, ts in timings.items():
    wall, cpu = statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)
    per = f"{1000 * wall / 32:.2f} ms/photo" if name.startswith("grade") else f"{wall:.3f} s/step"
    print(f"{name:28s} wall {per}  (cpu {cpu:.3f} s per batch of 32, {torch.get_num_threads()} threads)")
