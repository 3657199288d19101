"""--arch with timm models: built with SightX's head, ViTs at --image-size, through train config,
checkpoint and grader; a one-line install hint when timm is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from sightx.contracts import checkpoint as ckpt
from sightx.image.preprocess import PreprocessOptions
from sightx.models.factory import build_model, check_arch, last_feature_block
from sightx.models.timm_backbones import ArchError

pytest.importorskip("timm")
VIT = "vit_tiny_patch16_224"


def test_a_timm_vit_gets_the_head_and_the_image_size() -> None:
    model = build_model(VIT, "classify", image_size=64)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 5)
    assert model.pos_embed.shape[1] == 1 + (64 // 16) ** 2
    assert build_model(VIT, "regress", image_size=32)(torch.zeros(1, 3, 32, 32)).shape == (1, 1)
    assert last_feature_block(model) is model.blocks[-1]


def test_a_timm_cnn_and_the_timm_prefix() -> None:
    model = build_model("timm:resnet10t", "classify", image_size=48)
    assert model(torch.zeros(2, 3, 48, 48)).shape == (2, 5)
    assert type(build_model("resnet18", "classify")).__module__.startswith("torchvision")


def test_unknown_and_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ArchError, match="neither a torchvision model"):
        check_arch("no_such_net_42")
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ArchError, match=r"pip install 'sightx\[timm\]'"):
        check_arch(VIT)
    check_arch("resnet18")  # torchvision needs no timm


def test_train_config_refuses_unknown_arch_in_one_line(tmp_path: Path) -> None:
    from sightx.train.config import TrainConfig, TrainError

    with pytest.raises(TrainError, match="neither a torchvision"):
        TrainConfig(shards=str(tmp_path), arch="no_such_net_42")
    assert TrainConfig(shards=str(tmp_path), arch=VIT).arch == VIT


def test_a_timm_checkpoint_grades(tmp_path: Path) -> None:
    from sightx.inference.grader import Grader

    path = tmp_path / "vit.pt"
    model = build_model(VIT, "classify", image_size=32)
    state = ckpt.Checkpoint(VIT, "classify", 32, PreprocessOptions(size=32, quality=90).to_dict(), [0.5, 1.5, 2.5, 3.5], model.state_dict())
    ckpt.save(path, state)
    grader = Grader(path, "cpu", tta_mode="flips")
    out = grader.outputs([torch.zeros(3, 32, 32, dtype=torch.uint8)])
    assert out.shape == (1, 5) and abs(out.sum() - 1) < 1e-5
