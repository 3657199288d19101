"""sightx-bench: throughput against baselines, each measured in the same run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from sightx.cli.common import command
from sightx.parallel.pool import default_workers


@command()
@click.argument("stage", type=click.Choice(["shard", "load", "train", "sources", "serve", "all", "real"]), default="all")
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.option("--input", type=click.Path(file_okay=False), help="Raw fundus folder to measure on; default: synthetic EyePACS camera mix.")
@click.option("--images", type=click.IntRange(2), help="Full-resolution images each shard engine processes.  [default: 64; --quick: 6]")
@click.option("--workers", type=click.IntRange(1), default=default_workers(), show_default=True, help="Workers for the multi-worker runs.")
@click.option("--reps", type=click.IntRange(1), help="Timed repetitions per figure (median, min-max).  [default: 3; --quick: 1]")
@click.option("--shard-size", type=click.IntRange(1), help="Samples per shard.  [default: images / (4 x workers)]")
@click.option("--load-samples", type=click.IntRange(1), help="Samples per loader epoch.  [default: 512]")
@click.option("--arch", help="Model for the train stage (a torchvision name, as sightx-train --arch).  [default: resnet50]")
@click.option("--image-size", type=click.IntRange(32, 2048), help="Training input size.  [default: 512]")
@click.option("--batch-size", type=click.IntRange(1), help="Batch size for load and train.  [default: 8]")
@click.option("--train-steps", type=click.IntRange(1), help="Optimizer steps per timed repetition.  [default: 1]")
@click.option("--device", help="auto (MPS, then CUDA, then CPU), cpu, cuda, mps.  [default: auto]")
@click.option(
    "--executor",
    type=click.Choice(["pool", "dask-local"]),
    help="shard: dask-local measures SightX on a Dask LocalCluster against its own pool (no other engines).  [default: pool]",
)
@click.option("--img2dataset", help="img2dataset executable.  [default: on PATH, or beside this Python]")
@click.option(
    "--serve-model",
    "serve_models",
    multiple=True,
    help="ARCH:INPUT_PX:FIELD_PX (an untrained model of that shape) or a trained best.pt, served by the serve stage, repeatable.  "
    "[default: resnet18:160:256 (the demo's), resnet50:512:512]",
)
@click.option(
    "--serve-runtimes",
    callback=lambda _c, _p, v: None if v is None else tuple(x for x in v.split(",") if x and x != "none"),
    help="Runtimes the serve stage compares, comma-separated, or none.  "
    "[default: torch,onnxruntime,openvino,openvino-bf16,onnxruntime-int8,openvino-int8; --quick: torch,onnxruntime-int8]",
)
@click.option("--serve-agreement-photos", type=click.IntRange(1), help="Photos each runtime's grades are compared on.  [default: 100]")
@click.option("--serve-clients", type=click.IntRange(1), help="Concurrent clients of the serve stage.  [default: 8]")
@click.option("--serve-requests", type=click.IntRange(1), help="Requests per model for the server's memory figure.  [default: 1000]")
@click.option(
    "--serve-slow-clients", type=click.IntRange(1), help="Slow clients holding connections while latency is measured.  [default: 50]"
)
@click.option("--serve-bomb-requests", type=click.IntRange(1), help="Requests of 8 20 MP zero PNGs in the bomb burst.  [default: 16]")
@click.option("--serve-max-s", type=click.FloatRange(1), help="Seconds per model the memory run may take.  [default: 300]")
@click.option("--work", type=click.Path(file_okay=False), help="Keep the scratch files here instead of a temporary folder.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the full result as JSON.")
@click.option("--markdown", is_flag=True, help="Print the tables as Markdown, for the README.")
@click.option("--quick", is_flag=True, help="Smoke run on tiny images: checks the plumbing in seconds; the numbers mean nothing.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
@click.option(
    "--size",
    "real_size",
    type=click.IntRange(16, 4096),
    default=256,
    show_default=True,
    help="real: the output size photos are preprocessed at.",
)
@click.option(
    "--sheet", type=click.Path(dir_okay=False, path_type=Path), help="real: write a contact sheet of the rejected photos (PNG), with why."
)
def bench(
    stage: str,
    folders: tuple[Path, ...],
    json_path: Path | None,
    markdown: bool,
    quick: bool,
    quiet: bool,
    real_size: int,
    sheet: Path | None,
    **kw: object,
) -> None:
    """Throughput of SightX against naive PIL, OpenCV, img2dataset and ImageFolder; every source against a
    folder; the server's latency, throughput and memory: on this machine, baselines measured in the same run.

    `sightx-bench real [FOLDER...]`: the field finder and the gradability score on real photo folders
    (default: ../shared/real-dev when present): photos read, no-fov, circles, gradability AUC against a
    gradability.csv, the threshold's operating point, ms per photo."""
    from sightx.files.atomic import atomic_write_text

    log = (lambda _: None) if quiet else (lambda line: click.echo(line, err=True))
    if stage == "real":
        _real(list(folders), real_size, sheet, json_path, markdown, log)
        return
    if folders:
        raise click.UsageError(f"folders are for `sightx-bench real`, not {stage}")
    from sightx.bench import STAGES, BenchOptions, report, run_bench

    given = {k: v for k, v in kw.items() if v is not None and (v != () or k == "serve_runtimes")}  # --serve-runtimes none: ()
    given["stages"] = STAGES if stage == "all" else (stage,)
    opts = BenchOptions.smoke(**given) if quick else BenchOptions(**given)  # type: ignore[arg-type]
    result = run_bench(opts, log=log)
    if json_path is not None:
        import json

        atomic_write_text(json_path, json.dumps(result, indent=1) + "\n")
    click.echo(report.render(result, markdown), nl=False)


def _real(folders: list[Path], size: int, sheet: Path | None, json_path: Path | None, markdown: bool, log: Callable[[str], None]) -> None:
    from sightx.bench.real import DEFAULT, render, run_real
    from sightx.files.atomic import atomic_write_text

    if not folders:
        if not DEFAULT.is_dir():
            raise click.UsageError(f"no folder given and no {DEFAULT} here: name the folders of real photos to measure")
        folders = [DEFAULT]
    try:
        result = run_real(folders, size, log, sheet)
    except FileNotFoundError as e:
        raise click.UsageError(str(e)) from None
    if json_path is not None:
        import json

        atomic_write_text(json_path, json.dumps(result, indent=1) + "\n")
    click.echo(render(result, markdown), nl=False)
