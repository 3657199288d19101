"""--weights FILE from elsewhere: small checkpoints of each format built here (RETFound-style MAE, timm,
torchvision, safetensors), loaded with every key accounted for; never unpickled."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sightx.models.factory import WeightsError, build_model, build_model_reporting
from sightx.models.foreign import resize_pos_embed

timm = pytest.importorskip("timm")
VIT = "vit_tiny_patch16_224"


def _mae_checkpoint(path: Path, grid: int) -> dict[str, torch.Tensor]:
    """An MAE pretraining checkpoint as RETFound publishes one: {'model': encoder + decoder}, 'norm' at the end."""
    encoder = timm.create_model(VIT, num_classes=0, img_size=16 * grid, global_pool="token").state_dict()
    decoder = {"mask_token": torch.zeros(1, 1, 32), "decoder_embed.weight": torch.zeros(32, 192), "decoder_pred.bias": torch.zeros(768)}
    torch.save({"model": {**encoder, **decoder}, "epoch": 799}, path)
    return encoder


def test_a_retfound_style_mae_checkpoint_loads_into_a_global_pool_vit(tmp_path: Path) -> None:
    path = tmp_path / "RETFound_mae.pth"
    encoder = _mae_checkpoint(path, grid=4)  # pretrained at 64 px
    model, report = build_model_reporting(VIT, "classify", str(path), image_size=32)  # fine-tuned at 32 px
    assert report is not None
    assert "MAE" in report.format
    assert {k for k, why in report.ignored.items() if why == "MAE decoder"} == {"mask_token", "decoder_embed.weight", "decoder_pred.bias"}
    assert report.interpolated == ["17 -> 5 tokens"]
    assert "head.weight" in report.missing and "blocks.0.attn.qkv.weight" in report.loaded
    torch.testing.assert_close(model.state_dict()["blocks.11.mlp.fc2.weight"], encoder["blocks.11.mlp.fc2.weight"])
    assert model.pos_embed.shape[1] == 5
    assert "loaded" in report.summary() and "interpolated" in report.summary()

    pooled = timm.create_model(VIT, num_classes=5, img_size=64, global_pool="avg")
    from sightx.models.foreign import load_foreign

    r = load_foreign(pooled, path)
    assert "fc_norm.weight" in r.loaded  # the encoder's last norm, where a global-pool ViT keeps it
    torch.testing.assert_close(pooled.fc_norm.weight, encoder["norm.weight"])


def test_timm_and_torchvision_state_dicts_drop_the_imagenet_classifier(tmp_path: Path) -> None:
    tv = tmp_path / "resnet18.pth"
    torch.save(build_model("resnet18", "classify").state_dict() | {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, tv)
    model, report = build_model_reporting("resnet18", "regress", str(tv))
    assert report is not None and set(report.missing) == {"fc.weight", "fc.bias"}
    assert report.ignored["fc.weight"].startswith("shape (1000, 512)")

    tm = tmp_path / "vit.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in timm.create_model(VIT, img_size=32).state_dict().items()}}, tm)
    _, report = build_model_reporting(VIT, "classify", str(tm), image_size=32)
    assert report is not None and set(report.missing) == {"head.weight", "head.bias"} and not report.interpolated


def test_safetensors_and_refusals(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    st = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model(VIT, img_size=32).state_dict().items()}, str(st))
    _, report = build_model_reporting(VIT, "classify", str(st), image_size=32)
    assert report is not None and report.format == "safetensors state dict" and len(report.loaded) > 100

    evil = tmp_path / "evil.pt"
    torch.save({"x": object()}, evil)
    with pytest.raises(WeightsError, match="not a tensor-only weights file"):
        build_model("resnet18", "classify", str(evil))
    other = tmp_path / "other.pt"
    torch.save({"nothing.weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="no tensors match"):
        build_model("resnet18", "classify", str(other))


def test_position_embedding_resize_keeps_the_class_token() -> None:
    pos = torch.randn(1, 1 + 16, 8)
    out = resize_pos_embed(pos, torch.Size([1, 1 + 64, 8]), prefix=1)
    assert out.shape == (1, 65, 8)
    torch.testing.assert_close(out[:, 0], pos[:, 0])
    same = resize_pos_embed(pos, pos.shape, prefix=1)
    torch.testing.assert_close(same, pos)


def test_the_training_step_records_what_the_weights_gave(tmp_path: Path) -> None:
    from sightx.train.config import TrainConfig
    from sightx.train.trainer import build_step

    tv = tmp_path / "resnet18.pth"
    torch.save(build_model("resnet18", "classify").state_dict(), tv)
    _, ctx = build_step(TrainConfig(shards=str(tmp_path), arch="resnet18", weights=str(tv), image_size=32), torch.device("cpu"))
    assert ctx.weights_report is not None
    assert ctx.weights_report["missing"] == [] and ctx.weights_report["summary"].startswith(f"--weights {tv}")
