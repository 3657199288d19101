"""sightx-bench: SightX against the baselines people would use instead, on the same files in one run.

Stages: shard (engine vs naive PIL, OpenCV, img2dataset and the decode-only floor), load (the
training stream vs torchvision ImageFolder) and train (model images/s and whether the loader keeps up).
Heavy imports stay inside the stage modules so measurement processes only load what they measure.
"""

from sightx.bench.options import STAGES, BenchError, BenchOptions
from sightx.bench.run import run_bench

__all__ = ["STAGES", "BenchError", "BenchOptions", "run_bench"]
