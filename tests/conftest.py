"""Shared synthetic data: generated once per session, with the real generator and shard engine."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from sightx.image.preprocess import PreprocessOptions
from sightx.shard import ShardOptions, run
from sightx.synth.generate import SynthOptions, generate


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A balanced 40-image Kaggle-layout set at a small camera size."""
    root = tmp_path_factory.mktemp("tiny_raw")
    generate(root, SynthOptions(n=40, seed=21, sizes=((640, 427),), balanced=True, workers=2, progress=False))
    return root


@pytest.fixture(scope="session")
def tiny_shards(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 px shards of tiny_raw, 4 samples each, so workers and ranks have several shards to split."""
    out = tmp_path_factory.mktemp("tiny_shards")
    run(
        tiny_raw / "train",
        out,
        ShardOptions(PreprocessOptions(size=64, quality=90), shard_size=4, val_fraction=0.25, seed=2, workers=1, progress=False),
    )
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained, seeded resnet18 at 64 px saved as sightx-train saves one: for the grading path's plumbing."""
    import torch

    from sightx.contracts.checkpoint import Checkpoint, save
    from sightx.models.factory import build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_checkpoint") / "best.pt"
    model = build_model("resnet18", "classify")
    val = {
        "n": 10,
        "kappa": 0.5,
        "accuracy": 0.6,
        "referable": {"sensitivity": 0.7, "specificity": 0.8, "auc": 0.9},
        "baseline": {"grade": 0, "accuracy": 0.5, "kappa": 0.0},
    }
    save(
        path,
        Checkpoint(
            arch="resnet18",
            head="classify",
            image_size=64,
            preprocess=PreprocessOptions(size=64, quality=90).to_dict(),
            thresholds=[0.5, 1.5, 2.5, 3.5],
            model=model.state_dict(),
            epoch=1,
            val=val,
        ),
    )
    return path


@pytest.fixture(scope="session")
def shots() -> ModuleType:
    """tools/tutorial_shots.py (tools/ holds scripts, not a package): the docs' screenshots, and the one
    headless Chromium setup the browser tests share."""
    spec = importlib.util.spec_from_file_location("tutorial_shots", Path(__file__).parents[1] / "tools" / "tutorial_shots.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
