"""Published training recipes for Kaggle EyePACS, as sets of TrainConfig options.

`sightx-train --recipe NAME` starts from a recipe's settings; any option given on the command line
still wins, and the run folder's config.json records what was resolved. Where a recipe used
something SightX does not have (o_O's own 4x4-kernel networks), the nearest SightX setting stands
in and the source says so: the recipes reproduce the training set-up, not the authors' code.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sightx.train.config import TrainConfig, TrainError


@dataclass(frozen=True)
class Recipe:
    name: str
    source: str
    reported: str
    settings: dict[str, Any]


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "quick",
            "SightX's `make demo` settings: a short CPU run that shows the whole loop",
            "QWK 0.82-0.87 on 120 synthetic validation photos after 8 epochs (docs/performance/evidence.md)",
            {"arch": "resnet18", "image_size": 160, "epochs": 8, "batch_size": 32, "lr": 1e-3},
        ),
        Recipe(
            "huang2023",
            "Huang et al. 2023 (open PyTorch code): torchvision ResNet50 ImageNet-pretrained, 512 px, MSE regression "
            "with thresholds, instance-balanced sampling, SGD Nesterov 0.9, lr 1e-3 cosine, weight decay 5e-4, batch 16, "
            "25 epochs, best checkpoint by kappa; flips, brightness/contrast 0.2, random resized crop scale 0.87-1.15 "
            "ratio 0.7-1.3, rotation +-180, translation 0.2; EyePACS normalisation statistics",
            "QWK 0.863 on the 42,670 private test images",
            {
                "arch": "resnet50",
                "weights": "imagenet",
                "image_size": 512,
                "head": "regress",
                "balance": "none",
                "optimizer": "sgd",
                "lr": 1e-3,
                "schedule": "cosine",
                "warmup_epochs": 0.0,
                "weight_decay": 5e-4,
                "batch_size": 16,
                "epochs": 25,
                "brightness": 0.2,
                "contrast": 0.2,
                "saturation": 0.0,
                "scale": (0.87, 1.15),
                "stretch": (0.7, 1.3),
                "rotate": 180.0,
                "translate": 0.2,
                "normalization": "eyepacs",
            },
        ),
        Recipe(
            "retfound",
            "Zhou et al. 2023, RETFound (Nature), fine-tuning: ViT-Large/16 from the MAE-pretrained retinal encoder "
            "(pass it with --weights RETFound_cfp_weights.pth: its decoder is dropped, its position embedding fitted), "
            "224 px, AdamW, base lr 5e-3 x batch 16 / 256, weight decay 0.05, layer decay 0.65, label smoothing 0.1, "
            "mixup 0.8 and cutmix 1.0 (one of the two per batch), drop path (stochastic depth) 0.2, RandAugment 2 "
            "operations of magnitude 9, 10 warm-up epochs of 50, cross-entropy, no class balancing. Not reproduced "
            "here: timm's flavour of RandAugment (rand-m9-mstd0.5-inc1: magnitude noise, increasing-severity ops), random "
            "erasing 0.25 and the random resized crop (SightX's own geometry stands in)",
            "AUROC 0.943 (APTOS-2019), 0.822 (IDRiD), 0.884 (Messidor-2) for DR grading, fine-tuned per set",
            {
                "arch": "vit_large_patch16_224",
                "image_size": 224,
                "head": "classify",
                "optimizer": "adamw",
                "lr": 5e-3 * 16 / 256,
                "weight_decay": 0.05,
                "layer_decay": 0.65,
                "label_smoothing": 0.1,
                "mixup": 0.8,
                "cutmix": 1.0,
                "drop_path": 0.2,
                "randaugment": (2, 9),
                "batch_size": 16,
                "epochs": 50,
                "warmup_epochs": 10.0,
                "schedule": "cosine",
                "balance": "none",
            },
        ),
        Recipe(
            "kaggle2015-o_O",
            "Kaggle 2015, team o_O (2nd): 512 px, MSE regression with thresholds 0.5/1.5/2.5/3.5, resampling from "
            "class-balanced decaying to weight 1 for grade 0 and 2 for the others, 360 deg rotation, scale/stretch and "
            "colour augmentation, SGD with Nesterov momentum; their 4x4-kernel networks are stood in for by an "
            "ImageNet ResNet50 (blend with the other eye at prediction: sightx-predict --blend-eyes)",
            "QWK 0.845 private leaderboard (team, with the other-eye blend); 0.839 from single 4x4-net models",
            {
                "arch": "resnet50",
                "weights": "imagenet",
                "image_size": 512,
                "head": "regress",
                "balance": "progressive",
                "balance_decay": 0.975,
                "balance_end": (1.0, 2.0, 2.0, 2.0, 2.0),
                "optimizer": "sgd",
                "lr": 3e-3,
                "weight_decay": 5e-4,
                "batch_size": 32,
                "epochs": 100,
                "rotate": 180.0,
                "scale": (0.87, 1.15),
                "stretch": (0.77, 1.3),
                "translate": 0.1,
                "brightness": 0.2,
                "contrast": 0.2,
                "saturation": 0.2,
            },
        ),
    )
}


def resolve(recipe: str | None, given: dict[str, Any]) -> TrainConfig:
    """TrainConfig from the library's defaults, then the recipe's settings, then `given` (the options the
    user typed): the user's word always wins."""
    settings: dict[str, Any] = {}
    if recipe:
        if recipe not in RECIPES:
            raise TrainError(f"--recipe must be one of {', '.join(RECIPES)} (sightx-train --list-recipes)")
        settings = {**RECIPES[recipe].settings, "recipe": recipe}
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(given) - known
    if unknown:
        raise TrainError(f"unknown training options: {', '.join(sorted(unknown))}")
    return TrainConfig(**{**settings, **given})


def describe() -> str:
    """The recipes with their source and what it reported, for --list-recipes."""
    lines = []
    for r in RECIPES.values():
        shown = " ".join(f"--{k.replace('_', '-')} {_flag(v)}" for k, v in r.settings.items())
        lines += [f"{r.name}", f"  source:   {r.source}", f"  reported: {r.reported}", f"  sets:     {shown}", ""]
    return "\n".join(lines).rstrip() + "\n"


def _flag(value: Any) -> str:
    return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else str(value)
