"""sightx-train: its options are TrainConfig's fields, declared with the library's defaults."""

from __future__ import annotations

from typing import Any

import click

from sightx.cli.common import command, parse_floats, parse_ints
from sightx.labels.kinds import TASKS
from sightx.train.config import AMP_MODES, BALANCE_MODES, OPTIMIZERS, SCHEDULES, default


def option(field: str, *decls: str, **kw: Any) -> Any:
    """`--field-name` for a TrainConfig field, with the library's default (declared once, in the config)."""
    return click.option(f"--{field.replace('_', '-')}", *decls, default=default(field), show_default=True, **kw)


def _listed(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _list_recipes(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from sightx.train.recipes import describe

        click.echo(describe(), nl=False)
        ctx.exit()


@command()
@click.argument("shards", default="shards")
@click.option(
    "--manifest",
    metavar="FILE_OR_URL",
    help="Read manifest.json from this file or URL (default: beside the shards; for pipe: the command with {name} = manifest.json).",
)
@option("out", help="Run folder: metrics.jsonl, last.pt, best.pt, PNGs.")
@option(
    "task",
    type=click.Choice(list(TASKS)),
    help="grade: DR grades 0-4; gradability: a 3-way Good/Usable/Reject classifier on shards made with --label-format eyeq.",
)
@click.option(
    "--recipe", help="Start from a published recipe's settings (huang2023, kaggle2015-o_O, retfound, quick); flags given still win."
)
@click.option("--list-recipes", is_flag=True, expose_value=False, is_eager=True, callback=_list_recipes, help="Print the recipes and exit.")
@option(
    "arch",
    help="Any torchvision ResNet, EfficientNet or ConvNeXt by its torchvision name: resnet18..152, efficientnet_b0..b7, "
    "efficientnet_v2_s/m/l, convnext_tiny/small/base/large; or any timm model name (timm:NAME for timm's own of a "
    "torchvision name; needs pip install 'sightx[timm]'); ViTs are built at --image-size.",
)
@option(
    "head",
    type=click.Choice(["classify", "regress"]),
    help="5-way cross-entropy, or one score with MSE and kappa-optimised thresholds.",
)
@option(
    "weights",
    help="none, imagenet (torchvision's or timm's cache, downloaded there once), a weights file (SightX, timm, torchvision, "
    "RETFound MAE; .pth or .safetensors) or hf-hub:ORG/NAME[@REVISION] (through huggingface_hub's cache; needs "
    "pip install 'sightx[hub]'). What was loaded, missed and ignored goes to OUT/weights.json.",
)
@option(
    "image_size",
    type=click.IntRange(32, 2048),
)
@option(
    "epochs",
    type=click.IntRange(1),
)
@option(
    "batch_size",
    type=click.IntRange(1),
)
@option(
    "lr",
    type=click.FloatRange(0, min_open=True),
)
@option(
    "weight_decay",
    type=click.FloatRange(0),
)
@option(
    "optimizer",
    type=click.Choice(OPTIMIZERS),
)
@option(
    "schedule",
    type=click.Choice(SCHEDULES),
)
@option(
    "warmup_epochs",
    type=click.FloatRange(0),
)
@option(
    "balance",
    type=click.Choice(BALANCE_MODES),
    help="Counter the grade imbalance: resampling decaying towards the natural mix (default, best measured kappa), "
    "in the loss, by resampling, or not at all.",
)
@option("balance_decay", type=click.FloatRange(0, 1), help="progressive: share of balancing kept per epoch.")
@option("workers", type=click.IntRange(0), help="DataLoader workers.")
@option(
    "shuffle_buffer",
    type=click.IntRange(0),
)
@option(
    "max_bad_samples",
    type=click.IntRange(0),
    help="Corrupt samples skipped (and counted in metrics.jsonl) per epoch's train or val pass before the run stops.",
)
@click.option(
    "--min-gradability",
    type=click.FloatRange(0, 1),
    help="Skip samples whose gradability score (recorded by sightx-shard) is below this, in training and validation; "
    "counted per epoch in metrics.jsonl.  [default: keep all]",
)
@option(
    "seed",
    type=int,
)
@option("device", help="auto (MPS, then CUDA, then CPU), cpu, cuda, cuda:1, mps.")
@option(
    "amp",
    type=click.Choice(AMP_MODES),
)
@option(
    "normalization",
    help="Input statistics: imagenet, eyepacs (Huang et al. 2023), or M,M,M/S,S,S; recorded in the checkpoint for grading.",
)
@option("freeze", type=click.Choice(["none", "backbone"]), help="backbone: train only the classifier (a linear probe).")
@option(
    "layer_decay",
    type=click.FloatRange(0, 1, min_open=True),
    help="Layer-wise lr decay: a layer d below the head trains at lr * DECAY**d (0.65 for RETFound's ViT-L); 1: off.",
)
@option("label_smoothing", type=click.FloatRange(0, 1, max_open=True), help="Label smoothing of the cross-entropy (classify heads).")
@option("mixup", type=click.FloatRange(0), help="Mixup: images and labels mixed by Beta(ALPHA, ALPHA) (RETFound 0.8); 0: off.")
@option(
    "cutmix",
    type=click.FloatRange(0),
    help="CutMix: a box of area share 1-Beta(ALPHA, ALPHA) pasted from another image, labels mixed by its area "
    "(RETFound 1.0); with --mixup, one of the two per batch at random; 0: off.",
)
@option(
    "ema",
    type=click.FloatRange(0, 1, max_open=True),
    help="Exponential moving average of the weights with this decay (e.g. 0.999): validated, selected and saved; 0: off.",
)
@option(
    "drop_path",
    type=click.FloatRange(0, 1, max_open=True),
    help="Stochastic depth: each residual block skipped with up to this probability in training (timm's drop_path_rate, "
    "torchvision's stochastic_depth_prob; RETFound 0.2); ResNets have none.  [default: the architecture's own: "
    "torchvision ConvNeXt 0.1-0.5, EfficientNet 0.2, timm 0]",
)
@option("rotate", type=click.FloatRange(0, 180), help="Augmentation: rotation, degrees either way.")
@option("translate", type=click.FloatRange(0, 1), help="Augmentation: shift, fraction of the side.")
@click.option("--scale", callback=parse_floats(2), help=f"Augmentation: zoom range LOW,HIGH.  [default: {_listed(default('scale'))}]")
@click.option("--stretch", callback=parse_floats(2), help=f"Augmentation: aspect ratio LOW,HIGH.  [default: {_listed(default('stretch'))}]")
@option("brightness", type=click.FloatRange(0, 1), help="Augmentation: brightness jitter.")
@option("contrast", type=click.FloatRange(0, 1), help="Augmentation: contrast jitter.")
@option("saturation", type=click.FloatRange(0, 1), help="Augmentation: saturation jitter.")
@option(
    "randaugment",
    callback=parse_ints(2),
    metavar="N,M",
    help="Augmentation: torchvision's RandAugment after the above, N operations per image of magnitude M in 0-30 "
    "(RETFound 2,9), training only.  [default: off]",
)
@click.option(
    "--balance-end",
    callback=parse_floats(None),
    help="progressive: per-class weights on the natural mix the resampling ends at, e.g. 1,2,2,2,2 (o_O; "
    "3 for --task gradability).  [default: natural]",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from last.pt.")
@click.option("--tensorboard", is_flag=True, help="Also log to OUT/tensorboard (needs the tensorboard package).")
@click.option("--quiet", is_flag=True)
def train(shards: str, out: str, recipe: str | None, quiet: bool, **kw: object) -> None:
    """Train a model on SHARDS (default: shards/) written by sightx-shard, streaming them.

    SHARDS is a folder, an http(s):// URL serving one (manifest.json beside the shards), any fsspec
    URL (s3://..., with fsspec and its backend installed), or a command printing one shard, with
    {name} where its file name goes: 'pipe:aws s3 cp s3://bucket/shards/{name} -'."""
    from click.core import ParameterSource

    from sightx.train import train as run_train
    from sightx.train.recipes import resolve

    ctx = click.get_current_context()
    given = {k: v for k, v in kw.items() if ctx.get_parameter_source(k) not in (ParameterSource.DEFAULT, None) and v is not None}
    cfg = resolve(recipe, {"shards": shards, "out": out, "progress": not quiet, **given})
    try:
        history = run_train(cfg)
    except KeyboardInterrupt:
        click.echo(f"interrupted; `--resume --out {out}` continues from the last finished epoch", err=True)
        raise SystemExit(130) from None
    if history and "val" in history[-1] and "reject" in history[-1]["val"]:
        best = max(history, key=lambda h: h["val"]["reject"]["auc"] or 0.0)
        v = best["val"]
        click.echo(
            f"best epoch {best['epoch']}: Reject AUC {v['reject']['auc']} (chance 0.5), accuracy {v['accuracy']:.3f} "
            f"(always-majority {v['baseline']['accuracy']:.3f}); checkpoints in {out}"
        )
    elif history and "val" in history[-1]:
        best = max(history, key=lambda h: h["val"]["kappa"])
        v = best["val"]
        click.echo(
            f"best epoch {best['epoch']}: QWK {v['kappa']:.3f} (always-grade-{v['baseline']['grade']}: QWK 0.000, "
            f"accuracy {v['baseline']['accuracy']:.3f}); checkpoints in {out}"
        )
