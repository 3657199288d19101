"""Command-line entry points: parse, call the library, print. No logic lives here.

One module per group of commands; each declares its options in click's decorators, where `--help`
reads them without importing the library (imports of the library are inside the commands).
"""

from sightx.cli.benchmarks import bench
from sightx.cli.data import doctor, explore, fetch, shard, synth, verify
from sightx.cli.evaluation import evaluate
from sightx.cli.exporting import export
from sightx.cli.grading import predict, score, serve
from sightx.cli.training import train

__all__ = ["bench", "doctor", "evaluate", "explore", "export", "fetch", "predict", "score", "serve", "shard", "synth", "train", "verify"]
