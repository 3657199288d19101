"""sightx-evaluate: a checkpoint on labelled shards (sightx-score stays the Kaggle-CSV scorer)."""

from __future__ import annotations

from pathlib import Path

import click

from sightx.cli.common import command, runtime_option, tta_option


@command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out", default="evaluation", show_default=True, type=click.Path(file_okay=False, path_type=Path), help="report.html and metrics.json."
)
@click.option("--split", type=click.Choice(["train", "val", "test"]), help="Only samples of this split.  [default: every labelled sample]")
@tta_option
@click.option(
    "--fit-temperature",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="NEW_CHECKPOINT",
    help="Fit temperature scaling on these shards (a validation set) and write a copy of the checkpoint carrying it; "
    "predict and serve apply it.",
)
@click.option(
    "--bootstrap", type=click.IntRange(0), default=1000, show_default=True, help="Patient-level bootstrap resamples for the 95% CIs."
)
@click.option(
    "--fuse-eyes",
    is_flag=True,
    help="Also report the metrics per patient, each patient graded by the worse eye (patient ids from the shards' metadata).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--device", default="auto", show_default=True)
@runtime_option
@click.option("--quiet", is_flag=True)
def evaluate(checkpoint: Path, shards: tuple[Path, ...], quiet: bool, **kw: object) -> None:
    """Evaluate CHECKPOINT (a .pt, an exported .onnx, a hub folder or hf-hub:OWNER/NAME) on the labelled samples of
    SHARDS (folders or .tar files of any dataset sightx-shard wrote): QWK, kappa, AUROC (referable DR and per grade),
    operating points and calibration, each with a patient-level 95% CI."""
    from sightx.evaluation.assess import format_assessment
    from sightx.inference.evaluate import EvaluateOptions, evaluate_checkpoint

    opts = EvaluateOptions(progress=not quiet, **kw)  # type: ignore[arg-type]
    result = evaluate_checkpoint(checkpoint, list(shards), opts)
    click.echo(format_assessment(result))
    if "patient_level" in result:
        click.echo("\nper patient (--fuse-eyes, the worse eye):")
        click.echo(format_assessment(result["patient_level"]))
    click.echo(f"wrote {opts.out / 'report.html'} and {opts.out / 'metrics.json'}")
