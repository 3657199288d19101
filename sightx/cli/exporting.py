"""sightx-export: a checkpoint as an ONNX model, a torch.export program or a model folder to share."""

from __future__ import annotations

from pathlib import Path

import click

from sightx.cli.common import command


@command()
@click.argument("checkpoint")
@click.option("--format", "fmt", type=click.Choice(["onnx", "torch-export", "hub"]), required=True, help="onnx, torch-export (.pt2), hub.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="model.onnx, model.pt2, or the hub folder.")
@click.option("--quantize", is_flag=True, help="onnx: also write MODEL.int8.onnx (static int8), with its grade agreement.")
@click.option(
    "--photos",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder of photos to check (and calibrate int8) on.  [default: synthetic photos of every grade]",
)
@click.option(
    "--shards",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A shard set to check on instead: its val samples (with int8, the QWK of both models there), its train ones calibrate int8.",
)
@click.option("--n-photos", type=click.IntRange(0), default=48, show_default=True, help="Photos (or val samples) to check on.")
@click.option("--data-license", help="hub: the licence of the training photos, for the model card.")
@click.option(
    "--dataset",
    type=click.Choice(["eyepacs", "aptos", "idrid", "messidor2", "ddr", "eyeq", "synthetic"]),
    help="hub: the public set the model was trained on; the card states its licence.",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report as JSON.")
def export(
    checkpoint: str,
    fmt: str,
    out: Path,
    quantize: bool,
    photos: Path | None,
    shards: Path | None,
    n_photos: int,
    data_license: str | None,
    dataset: str | None,
    json_path: Path | None,
) -> None:
    """Export CHECKPOINT (a .pt from sightx-train, a hub folder, or hf-hub:OWNER/NAME), checked against PyTorch."""
    from sightx.export.formats import export as run_export

    report = run_export(
        checkpoint,
        fmt,
        out,
        quantize=quantize,
        photos=photos,
        shards=shards,
        n_photos=n_photos,
        license=data_license,
        dataset=dataset,
        log=lambda line: click.echo(line, err=True),
    )
    checked = f"{report['photos']} photos, generated batches of 1 and 3"
    click.echo(f"wrote {out}: outputs within {report['max_difference']:.2e} of PyTorch ({checked})")
    int8 = report.get("int8")
    if int8:
        agreement = int8["grade_agreement"]
        click.echo(
            f"wrote {int8['out']} ({int8['mb']} MB): same grade as the float model on "
            f"{'n/a' if agreement is None else f'{agreement:.1%}'} of {int8['agreement_photos']} photos "
            f"(calibrated on {int8['calibration_photos']} others); outputs within {int8['max_difference']:.2e}"
        )
        if "qwk" in int8:
            qwk = int8["qwk"]
            click.echo(f"QWK on those photos: {qwk['float']:.4f} float, {qwk['int8']:.4f} int8 (change {qwk['change']:+.4f})")
    if json_path is not None:
        import json

        from sightx.files.atomic import atomic_write_text

        atomic_write_text(json_path, json.dumps(report, indent=1) + "\n")
