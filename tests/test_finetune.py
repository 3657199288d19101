"""Fine-tuning modes: the linear probe trains the classifier alone, layer decay scales lr by depth,
label smoothing reaches the loss, the retfound recipe carries its published settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sightx.models import heads
from sightx.models.factory import build_model
from sightx.train import finetune
from sightx.train.config import TrainConfig, TrainError
from sightx.train.recipes import RECIPES, resolve
from sightx.train.trainer import build_optimizer


def test_linear_probe_trains_only_the_classifier(tmp_path: Path) -> None:
    model = build_model("resnet18", "classify")
    opt = build_optimizer(TrainConfig(shards=str(tmp_path), arch="resnet18", freeze="backbone"), model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == 512 * 5 + 5


def test_layer_decay_scales_lr_from_the_head_down() -> None:
    model = build_model("resnet18", "classify")
    ids = finetune.layer_ids(model)
    assert ids["conv1.weight"] == 0 and ids["fc.weight"] == max(ids.values())
    assert ids["layer1.0.conv1.weight"] < ids["layer1.1.conv1.weight"] < ids["layer4.1.conv2.weight"] < ids["fc.bias"]
    groups = finetune.param_groups(model, 1e-3, 0.5)
    top = max(g["layer"] for g in groups)
    for g in groups:
        assert g["lr"] == pytest.approx(1e-3 * 0.5 ** (top - g["layer"]))
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert len(finetune.param_groups(model, 1e-3, 1.0)) == 1


def test_layer_decay_on_a_vit_counts_its_blocks() -> None:
    pytest.importorskip("timm")
    model = build_model("vit_tiny_patch16_224", "classify", image_size=32)
    ids = finetune.layer_ids(model)
    assert ids["cls_token"] == ids["pos_embed"] == ids["patch_embed.proj.weight"] == 0
    assert ids["blocks.0.attn.qkv.weight"] == 1 and ids["blocks.11.mlp.fc2.bias"] == 12
    assert ids["head.weight"] == max(ids.values()) > ids["norm.weight"] == 13


def test_label_smoothing_reaches_the_loss() -> None:
    head = heads.get("classify")
    out, y, w = torch.tensor([[4.0, 0, 0, 0, 0]]), torch.tensor([0]), torch.ones(1)
    plain, smooth = head.loss(out, y, w), head.loss(out, y, w, 0.1)
    assert smooth > plain
    assert smooth == pytest.approx(torch.nn.functional.cross_entropy(out, y, label_smoothing=0.1))


def test_options_are_checked(tmp_path: Path) -> None:
    for bad in (
        {"freeze": "all"},
        {"layer_decay": 0.0},
        {"label_smoothing": 1.0},
        {"label_smoothing": 0.1, "head": "regress"},
        {"cutmix": -1.0},
        {"cutmix": 1.0, "head": "regress"},
        {"drop_path": 1.0},
        {"drop_path": -0.1},
        {"randaugment": (0, 9)},
        {"randaugment": (2, 31)},
        {"randaugment": (2,)},
    ):
        with pytest.raises(TrainError):
            TrainConfig(shards=str(tmp_path), **bad)  # type: ignore[arg-type]


def test_the_retfound_recipe(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    r = RECIPES["retfound"]
    assert r.settings["layer_decay"] == 0.65 and r.settings["label_smoothing"] == 0.1 and r.settings["image_size"] == 224
    assert r.settings["mixup"] == 0.8 and r.settings["cutmix"] == 1.0 and r.settings["drop_path"] == 0.2
    assert r.settings["randaugment"] == (2, 9) and "RandAugment 2 operations of magnitude 9" in r.source
    assert "drop path (stochastic depth) 0.2" in r.source and "cutmix 1.0" in r.source
    assert "Not reproduced here: timm's flavour of RandAugment" in r.source  # said, not silently dropped
    cfg = resolve("retfound", {"shards": str(tmp_path), "weights": "RETFound_cfp_weights.pth", "epochs": 2})
    assert cfg.arch == "vit_large_patch16_224" and cfg.epochs == 2 and cfg.recipe == "retfound"


def test_a_linear_probe_step_moves_the_classifier_alone(tmp_path: Path) -> None:
    from sightx.train.loop import train_step
    from sightx.train.trainer import build_step

    cfg = TrainConfig(shards=str(tmp_path), arch="resnet18", freeze="backbone", label_smoothing=0.1, amp="off", lr=1e-2)
    model, ctx = build_step(cfg, torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_step(ctx, torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 2, 3]), torch.ones(4))
    after = model.state_dict()
    assert torch.equal(before["conv1.weight"], after["conv1.weight"]) and torch.equal(
        before["layer4.1.conv2.weight"], after["layer4.1.conv2.weight"]
    )
    assert not torch.equal(before["fc.weight"], after["fc.weight"])


def test_mixup_is_the_mix_of_two_losses() -> None:
    import numpy as np

    from sightx.train.loop import train_step
    from sightx.train.trainer import build_step

    cfg = TrainConfig(shards="x", arch="resnet18", mixup=0.8, amp="off", lr=0.0)
    model, ctx = build_step(cfg, torch.device("cpu"))
    images, y, w = torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 2, 3]), torch.ones(4)
    ctx.generator = np.random.default_rng(3)
    loss = train_step(ctx, images, y, w)
    rng = np.random.default_rng(3)
    lam, perm = float(rng.beta(0.8, 0.8)), torch.from_numpy(rng.permutation(4))
    from sightx.inference.transforms import normalize_batch

    model.train()
    x = normalize_batch(images, ctx.device, ctx.channels_last)
    out = model(lam * x + (1 - lam) * x[perm])
    want = lam * ctx.head.loss(out, y, w) + (1 - lam) * ctx.head.loss(out, y[perm], w)
    assert float(loss) == pytest.approx(float(want.detach()), rel=1e-4)


def test_the_cutmix_box_area_is_the_loss_weight() -> None:
    import numpy as np

    from sightx.train.loop import cutmix_box

    rng = np.random.default_rng(0)
    for _ in range(200):
        lam = float(rng.beta(1.0, 1.0))
        top, bottom, left, right, share = cutmix_box(lam, 32, 48, rng)
        assert 0 <= top <= bottom <= 32 and 0 <= left <= right <= 48
        assert share == pytest.approx(1 - (bottom - top) * (right - left) / (32 * 48))
        assert share >= lam - 1e-9  # clipping at the border only shrinks the box


def _cutmix_ctx(mixup: float, cutmix: float, seed: int):  # type: ignore[no-untyped-def]
    import numpy as np

    from sightx.train.trainer import build_step

    cfg = TrainConfig(shards="x", arch="resnet18", mixup=mixup, cutmix=cutmix, amp="off", lr=0.0)
    model, ctx = build_step(cfg, torch.device("cpu"))
    ctx.generator = np.random.default_rng(seed)
    return model, ctx


def test_cutmix_pastes_a_box_and_mixes_labels_by_its_area() -> None:
    from sightx.train.loop import mix_batch

    _, ctx = _cutmix_ctx(0.0, 1.0, 5)
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 16, 16).contiguous()  # image i is all i
    mixed, lam, perm = mix_batch(ctx, x)
    assert perm is not None
    for i in range(4):
        pasted = mixed[i] == float(perm[i])
        own = mixed[i] == float(i)
        if int(perm[i]) != i:
            assert bool((pasted | own).all())  # nothing but the image itself and its partner
            assert float(own.float().mean()) == pytest.approx(lam)  # the loss weight is the share left uncovered
    assert torch.equal(x[:, 0, 0, 0], torch.arange(4, dtype=torch.float32))  # the input batch is not modified

    # the loss: lam on the batch's own labels, 1 - lam on the partners'
    from sightx.inference.transforms import normalize_batch
    from sightx.train.loop import train_step

    model, ctx = _cutmix_ctx(0.0, 1.0, 3)
    images, y, w = torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 2, 3]), torch.ones(4)
    loss = train_step(ctx, images, y, w)
    model.train()
    _, ctx2 = _cutmix_ctx(0.0, 1.0, 3)
    x2, lam2, perm2 = mix_batch(ctx2, normalize_batch(images, ctx.device, ctx.channels_last))
    assert perm2 is not None and lam2 < 1.0
    out = model(x2)
    want = lam2 * ctx.head.loss(out, y, w) + (1 - lam2) * ctx.head.loss(out, y[perm2], w)
    assert float(loss) == pytest.approx(float(want.detach()), rel=1e-4)


def test_mixup_and_cutmix_together_pick_one_per_batch() -> None:
    from sightx.train.loop import mix_batch

    _, ctx = _cutmix_ctx(0.8, 1.0, 11)
    x = torch.randn(6, 3, 16, 16)
    kinds = set()
    for _ in range(40):
        mixed, lam, perm = mix_batch(ctx, x)
        assert perm is not None
        boxed = bool(((mixed == x) | (mixed == x[perm])).all())  # CutMix: every pixel is one image's or the other's
        kinds.add("cutmix" if boxed else "mixup")
    assert kinds == {"cutmix", "mixup"}


def test_a_cutmix_run_trains_an_epoch(tiny_shards: Path, tmp_path: Path) -> None:
    from sightx.train.trainer import train

    base = dict(arch="resnet18", image_size=32, batch_size=8, workers=0, progress=False, lr=1e-2, cutmix=1.0, mixup=0.8)
    history = train(TrainConfig(shards=str(tiny_shards), out=str(tmp_path), epochs=1, **base))  # type: ignore[arg-type]
    assert [h["epoch"] for h in history] == [1] and history[0]["train_images"] > 0


def test_an_ema_run_validates_and_saves_the_average_and_resumes(tiny_shards: Path, tmp_path: Path) -> None:
    from sightx.contracts import checkpoint as ckpt
    from sightx.train.trainer import train

    base = dict(arch="resnet18", image_size=32, batch_size=8, workers=0, progress=False, lr=1e-2, ema=0.5, label_smoothing=0.1)
    train(TrainConfig(shards=str(tiny_shards), out=str(tmp_path), epochs=1, **base))  # type: ignore[arg-type]
    state = ckpt.load(tmp_path / "last.pt")
    raw = state.training["raw_model"]
    assert not torch.equal(raw["fc.weight"], state.model["fc.weight"])  # the average is not the last step
    history = train(TrainConfig(shards=str(tiny_shards), out=str(tmp_path), epochs=2, resume=True, **base))  # type: ignore[arg-type]
    assert [h["epoch"] for h in history] == [1, 2]


def _depth_rates(model: torch.nn.Module) -> list[float]:
    """Every stochastic depth rate in the model: timm's DropPath.drop_prob, torchvision's StochasticDepth.p."""
    return [
        float(getattr(m, "drop_prob", getattr(m, "p", 0.0))) for m in model.modules() if type(m).__name__ in ("DropPath", "StochasticDepth")
    ]


def test_drop_path_reaches_torchvision_and_timm_models() -> None:
    from sightx.models.factory import build_model_reporting

    convnext, _ = build_model_reporting("convnext_tiny", "classify", drop_path=0.3)
    assert max(_depth_rates(convnext)) == pytest.approx(0.3)  # torchvision ramps it up to the last block
    assert max(_depth_rates(build_model("convnext_tiny", "classify"))) == pytest.approx(0.1)  # None: torchvision's own
    efficientnet, _ = build_model_reporting("efficientnet_b0", "classify", drop_path=0.0)
    assert set(_depth_rates(efficientnet)) == {0.0}
    pytest.importorskip("timm")
    vit, _ = build_model_reporting("vit_tiny_patch16_224", "classify", image_size=32, drop_path=0.2)
    assert max(_depth_rates(vit)) == pytest.approx(0.2) and not _depth_rates(build_model("vit_tiny_patch16_224", "classify", image_size=32))


def test_drop_path_on_a_model_without_it_is_one_line() -> None:
    from sightx.models.factory import build_model_reporting
    from sightx.models.timm_backbones import ArchError

    with pytest.raises(ArchError, match="torchvision's resnet18 has no stochastic depth") as e:
        build_model_reporting("resnet18", "classify", drop_path=0.1)
    assert "\n" not in str(e.value)
    assert not _depth_rates(build_model_reporting("resnet18", "classify", drop_path=0.0)[0])  # 0 asks for none: fine
    pytest.importorskip("timm")
    with pytest.raises(ArchError, match="timm's vgg11 has no stochastic depth"):
        build_model_reporting("timm:vgg11", "classify", image_size=32, drop_path=0.1)


def test_a_drop_path_run_records_it_and_a_resnet_refuses_it(tiny_shards: Path, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from sightx.cli import train as train_cli
    from sightx.contracts import checkpoint as ckpt

    pytest.importorskip("timm")
    base = [str(tiny_shards), "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--workers", "0", "--quiet"]
    res = CliRunner().invoke(train_cli, [*base, "--out", str(tmp_path / "run"), "--arch", "timm:resnet10t", "--drop-path", "0.1"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["drop_path"] == 0.1
    assert ckpt.load(tmp_path / "run" / "last.pt").config["drop_path"] == 0.1
    res = CliRunner().invoke(train_cli, [*base, "--out", str(tmp_path / "r18"), "--arch", "resnet18", "--drop-path", "0.1"])
    assert res.exit_code == 1 and "torchvision's resnet18 has no stochastic depth" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
