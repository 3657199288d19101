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
