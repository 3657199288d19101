"""Run by torchrun in tests/test_train.py: one rank's training epoch as the trainer streams it, then the run.

Each rank writes the sample keys its train loader yields in epoch 1 (KEYS/rank-R.json), so the
test can check that the ranks together see every sample exactly once; then `fit` runs that epoch
for real (DDP over gloo) and rank 0 writes metrics.jsonl and the checkpoints as sightx-train does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sightx.train import TrainConfig, distributed
from sightx.train.trainer import Trainer


def main(shards: str, out: str, keys: str) -> None:
    cfg = TrainConfig(
        shards=shards,
        out=out,
        arch="resnet18",
        image_size=32,
        batch_size=4,
        workers=0,
        epochs=1,
        balance="none",  # every sample once, no resampling
        device="cpu",  # gloo
        progress=False,
    )
    d = distributed.init(cfg.device)
    try:
        trainer = Trainer(cfg, d)
        trainer.epoch_value.value = 0
        seen = [k for *_, batch in trainer.train_loader for k in batch]
        Path(keys, f"rank-{d.rank}.json").write_text(json.dumps({"world": d.world, "keys": seen}))
        trainer.fit()
        trainer.close()
    finally:
        distributed.close(d)


if __name__ == "__main__":
    main(*sys.argv[1:4])
