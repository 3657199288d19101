"""Published recipes: resolved with the user's flags winning, listed with their source, and wired into a real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sightx.cli import train as train_cli
from sightx.contracts.checkpoint import load as load_checkpoint
from sightx.image.normalization import EYEPACS
from sightx.train.augment import Augment
from sightx.train.balance import target_distribution
from sightx.train.config import TrainError
from sightx.train.recipes import RECIPES, resolve


def test_a_recipe_sets_its_options_and_the_users_flags_win() -> None:
    cfg = resolve("huang2023", {"shards": "s", "lr": 0.01})
    assert (cfg.arch, cfg.head, cfg.optimizer, cfg.batch_size, cfg.epochs, cfg.weight_decay) == ("resnet50", "regress", "sgd", 16, 25, 5e-4)
    assert cfg.lr == 0.01 and cfg.normalization == "eyepacs" and cfg.stretch == (0.7, 1.3) and cfg.recipe == "huang2023"
    o_o = resolve("kaggle2015-o_O", {"shards": "s"})
    assert o_o.balance == "progressive" and o_o.balance_end == (1.0, 2.0, 2.0, 2.0, 2.0)
    assert resolve(None, {"shards": "s"}).recipe == "none"
    with pytest.raises(TrainError, match="--recipe must be one of"):
        resolve("best-ever", {"shards": "s"})


def test_list_recipes_names_each_with_source_and_result() -> None:
    res = CliRunner().invoke(train_cli, ["--list-recipes"])
    assert res.exit_code == 0
    for name in ("quick", "huang2023", "kaggle2015-o_O"):
        assert f"\n{name}\n" in f"\n{res.output}"
    assert "QWK 0.863" in res.output and "QWK 0.845" in res.output and "--normalization eyepacs" in res.output


def test_the_progressive_end_point_weights_the_natural_mix() -> None:
    counts = [730, 70, 150, 30, 20]
    end = target_distribution("progressive", counts, epoch=10_000, decay=0.5, end=(1, 2, 2, 2, 2))
    natural = np.array(counts) / sum(counts)
    expected = natural * [1, 2, 2, 2, 2] / (natural * [1, 2, 2, 2, 2]).sum()
    assert end == pytest.approx(expected)
    assert target_distribution("progressive", counts, epoch=0, decay=0.5, end=(1, 2, 2, 2, 2)) == pytest.approx([0.2] * 5)


def test_stretch_changes_the_aspect_ratio_and_is_not_drawn_by_default() -> None:
    flat = Augment(64, degrees=0, translate=0, scale=(1, 1), stretch=(2.0, 2.0))
    m = flat.geometry((64, 64), np.random.default_rng(0))
    assert abs(m[0, 0]) / abs(m[1, 1]) == pytest.approx(2.0)
    # With no stretch the draws (and so the seeded augmentation of every earlier run) are unchanged.
    used, expected = np.random.default_rng(3), np.random.default_rng(3)
    Augment(64).geometry((64, 64), used)
    expected.random(), expected.random(), expected.uniform(-180, 180), expected.uniform(0.92, 1.08), expected.uniform(-0.04, 0.04, 2)
    assert used.random() == expected.random()  # the same number of draws as before stretch existed


def test_a_recipe_run_trains_with_its_settings_and_records_them(tiny_shards: Path, tmp_path: Path) -> None:
    """huang2023 shrunk to seconds by flags: SGD Nesterov, regression, EyePACS statistics, recorded in config.json and the checkpoint."""
    out = tmp_path / "run"
    args = [str(tiny_shards), "--out", str(out), "--recipe", "huang2023", "--weights", "none", "--arch", "resnet18"]
    args += ["--image-size", "32", "--epochs", "1", "--batch-size", "8", "--workers", "0", "--quiet"]
    res = CliRunner().invoke(train_cli, args)
    assert res.exit_code == 0, res.output
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"] == "huang2023" and config["optimizer"] == "sgd" and config["head"] == "regress"
    assert config["image_size"] == 32 and config["stretch"] == [0.7, 1.3] and config["translate"] == 0.2
    state = load_checkpoint(out / "last.pt")
    assert state.head == "regress" and state.normalization == EYEPACS and state.config["recipe"] == "huang2023"
    group = state.training["optimizer"]["param_groups"][0]
    assert group["nesterov"] is True and group["momentum"] == 0.9 and group["weight_decay"] == 5e-4
    assert isinstance(state.model["fc.weight"], torch.Tensor) and set(RECIPES) >= {"huang2023"}
