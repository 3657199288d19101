"""What every command shares: SightX errors as click's one-line errors, and option parsers."""

from __future__ import annotations

from functools import partial
from typing import Any

import click

from sightx.errors import SightXError


class _Command(click.Command):
    """Every SightX problem (a SightXError) becomes click's one-line `Error: ...` and exit status 1, here only."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SightXError as e:
            raise click.ClickException(str(e)) from None


command = partial(click.command, cls=_Command, context_settings={"help_option_names": ["-h", "--help"]})


def parse_sizes(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[int, int], ...] | None:
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


def parse_floats(n: int | None) -> Any:
    """A click callback parsing 'A,B[,...]' into a tuple of floats (n of them when n is given); None stays None."""
    return _parse_numbers(n, float)


def parse_ints(n: int | None) -> Any:
    """`parse_floats` for whole numbers."""
    return _parse_numbers(n, int)


def _parse_numbers(n: int | None, kind: type) -> Any:
    def parse(_ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[Any, ...] | None:
        if value is None:
            return None
        try:
            out = tuple(kind(v) for v in value.split(","))
        except ValueError:
            what = "numbers" if kind is float else "whole numbers"
            raise click.BadParameter(f"{value!r} is not comma-separated {what}") from None
        if n is not None and len(out) != n:
            raise click.BadParameter(f"{value!r}: expected {n} numbers")
        return out

    return parse


# sightx.inference.runtimes.CHOICES, written out so the CLI starts without torch (test_contracts checks they agree).
RUNTIME_CHOICES = ("auto", "torch", "onnxruntime", "openvino", "openvino-bf16")
runtime_option = click.option(
    "--runtime",
    type=click.Choice(list(RUNTIME_CHOICES)),
    default="auto",
    show_default=True,
    help="What runs the model; auto: the fastest installed for that file on that device (float32); openvino-bf16: "
    "OpenVINO in bfloat16 on CPUs with bf16 instructions, faster, probabilities within about 0.01.",
)

# sightx.inference.tta.TTA_MODES, written out so the CLI starts without torch (test_contracts checks they agree).
TTA_CHOICES = ("none", "flips", "flips+rot90")
tta_option = click.option(
    "--tta",
    type=click.Choice(TTA_CHOICES),
    default="none",
    show_default=True,
    help="Test-time augmentation: average over flips (3 model passes) or flips and 90-degree rotations (6).",
)
