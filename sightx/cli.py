"""Command-line entry points: parse, call the library, print. No logic lives here."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sightx.pool import default_workers


def _size(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[int, int], ...] | None:
    """Parse repeated WxH options."""
    sizes = []
    for value in values:
        try:
            w, h = (int(v) for v in value.lower().split("x"))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT, e.g. 3888x2592") from None
        if w < 64 or h < 64:
            raise click.BadParameter(f"{value!r}: width and height must be at least 64")
        sizes.append((w, h))
    return tuple(sizes) or None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n", type=click.IntRange(0), default=40, show_default=True, help="Labelled images (both eyes per patient).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, byte-identical files.")
@click.option("--size", "sizes", multiple=True, callback=_size, help="WxH, repeatable; default: the EyePACS camera mix.")
@click.option("--quality", type=click.IntRange(30, 100), default=90, show_default=True, help="JPEG quality.")
@click.option("--balanced", is_flag=True, help="Equal grade frequencies instead of EyePACS' 73% grade 0.")
@click.option("--corrupt", type=click.IntRange(0), default=0, show_default=True, help="Also write K broken inputs.")
@click.option("--with-test", "n_test", type=click.IntRange(0), default=0, show_default=True, help="Unlabelled test/ images, as Kaggle.")
@click.option("--ungradable", type=click.FloatRange(0, 1), default=0.015, show_default=True, help="Share of ungradable shots.")
@click.option("--workers", type=click.IntRange(1), default=default_workers(), show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def synth(
    out: Path,
    n: int,
    seed: int,
    sizes: tuple[tuple[int, int], ...] | None,
    quality: int,
    balanced: bool,
    corrupt: int,
    n_test: int,
    ungradable: float,
    workers: int,
    quiet: bool,
) -> None:
    """Generate a synthetic EyePACS set in the Kaggle layout: OUT/train/*.jpeg, OUT/trainLabels.csv."""
    from sightx.synth.generate import SynthOptions, generate

    opts = SynthOptions(n, seed, sizes, quality, balanced, workers, corrupt, n_test, ungradable, not quiet)
    start = time.perf_counter()
    try:
        summary = generate(out, opts)
    except OSError as e:
        raise click.ClickException(f"cannot write to {out}: {e.strerror or e}") from None
    elapsed = time.perf_counter() - start
    grades = " ".join(f"{g}:{c}" for g, c in summary.grades.items())
    click.echo(
        f"wrote {summary.train} train + {summary.test} test + {summary.corrupt} corrupt images to {out} "
        f"({summary.bytes / 1e6:.1f} MB) in {elapsed:.1f}s; grades {grades}"
    )


def _quality_rules(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[tuple[str, float], ...]:
    """Parse 'brightness=20,sharpness=5' into (metric, minimum) rules."""
    from sightx.shard.task import QUALITY_METRICS

    rules = []
    for part in filter(None, (value or "").split(",")):
        name, _, threshold = part.partition("=")
        try:
            rules.append((name.strip(), float(threshold)))
        except ValueError:
            raise click.BadParameter(f"{part!r} is not METRIC=VALUE") from None
        if name.strip() not in QUALITY_METRICS:
            raise click.BadParameter(f"unknown metric {name!r}; choose from {', '.join(QUALITY_METRICS)}")
    return tuple(rules)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("raw", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path), default=Path("shards"))
@click.option("--labels", type=click.Path(dir_okay=False), help="Label CSV (image,level); default: trainLabels.csv in RAW or its parent.")
@click.option("--unlabeled", is_flag=True, help="Write images without a label into a 'test' split instead of rejecting them.")
@click.option("--size", type=click.IntRange(32, 4096), default=512, show_default=True, help="Output side in pixels.")
@click.option("--normalize", type=click.Choice(["graham", "clahe", "none"]), default="graham", show_default=True)
@click.option("--quality", type=click.IntRange(50, 100), default=95, show_default=True, help="Output JPEG quality.")
@click.option("--shard-size", type=click.IntRange(1), default=1000, show_default=True, help="Samples per shard.")
@click.option("--val-fraction", type=click.FloatRange(0, 0.9), default=0.1, show_default=True, help="Share of patients held out.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the split and the shuffling.")
@click.option("--min-quality", callback=_quality_rules, help="Reject below these, e.g. 'brightness=15,sharpness=2'.")
@click.option("--max-pixels", type=click.IntRange(1), default=60_000_000, show_default=True, help="Reject larger images from the header.")
@click.option("--workers", type=click.IntRange(1), default=default_workers(), show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace shards made with other options.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def shard(
    raw: Path,
    out: Path,
    labels: str | None,
    unlabeled: bool,
    size: int,
    normalize: str,
    quality: int,
    shard_size: int,
    val_fraction: float,
    seed: int,
    min_quality: tuple[tuple[str, float], ...],
    max_pixels: int,
    workers: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Preprocess RAW fundus JPEGs into WebDataset shards in OUT (default: shards/)."""
    from sightx.preprocess import PreprocessOptions
    from sightx.shard import ShardError, ShardInterrupted, ShardOptions, format_summary, run

    pre = PreprocessOptions(size=size, normalize=normalize, quality=quality, max_pixels=max_pixels)
    opts = ShardOptions(pre, shard_size, val_fraction, seed, unlabeled, min_quality, labels, workers, overwrite, not quiet)
    try:
        result = run(raw, out, opts)
    except ShardError as e:
        raise click.ClickException(str(e)) from None
    except ShardInterrupted as e:
        click.echo(str(e), err=True)
        raise SystemExit(130) from None
    click.echo(format_summary(result, out))
