"""The grading commands: sightx-predict, sightx-serve, sightx-score."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from sightx.cli.common import command, runtime_option, tta_option
from sightx.parallel.pool import default_workers


def _model_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--checkpoint and --runtime, as predict and serve both take them."""
    f = runtime_option(f)
    return click.option(
        "--checkpoint",
        required=True,
        help="best.pt from sightx-train, an exported .onnx, a model folder (sightx-export --format hub) or hf-hub:OWNER/NAME.",
    )(f)


@command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_model_options
@click.option("--out", "out_csv", default="predictions.csv", show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=default_workers(), show_default=True, help="Preprocessing processes.")
@click.option("--device", default="auto", show_default=True)
@tta_option
@click.option("--blend-eyes", is_flag=True, help="Mix in the other eye's prediction (Kaggle {patient}_{left|right} names).")
@click.option(
    "--submission",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Kaggle's sampleSubmission.csv: write exactly its image,level rows to --out (ids not graded get the majority grade).",
)
@click.option(
    "--gradability-model",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A sightx-train --task gradability checkpoint: adds its score (gradability_model, 1 - P(Reject)) per photo.",
)
@click.option("--quiet", is_flag=True)
def predict(
    inputs: tuple[Path, ...],
    checkpoint: str,
    runtime: str,
    gradability_model: Path | None,
    out_csv: Path,
    batch_size: int,
    workers: int,
    device: str,
    tta: str,
    blend_eyes: bool,
    submission: Path | None,
    quiet: bool,
) -> None:
    """Grade INPUTS (image files, folders, zips, split parts, the competition zip's test images, .tar shards)
    with the checkpoint's own preprocessing."""
    from sightx.inference.gradability_model import load as load_gradability
    from sightx.inference.grader import Grader
    from sightx.inference.predict import grade_inputs, read_submission_ids, write_csv
    from sightx.inference.predict import submission as kaggle_rows

    ids = read_submission_ids(submission) if submission else None
    grader = Grader(checkpoint, device, runtime=runtime, tta_mode=tta)
    gradability = load_gradability(gradability_model, device) if gradability_model else None
    rows = grade_inputs(
        grader, list(inputs), batch_size=batch_size, workers=workers, blend_eyes=blend_eyes, progress=not quiet, gradability=gradability
    )
    out_rows = rows
    if ids is not None:
        out_rows, missing = kaggle_rows(rows, ids, grader.majority_grade)
        if missing:
            click.echo(f"{len(missing)} id(s) without a graded photo got grade {grader.majority_grade}: {' '.join(missing)}", err=True)
    try:
        write_csv(out_rows, out_csv)
    except OSError as e:
        raise click.ClickException(f"cannot write {out_csv}: {e.strerror or e}") from None
    failed = sum(bool(r["error"]) for r in rows)
    warned = sum(bool(r["warnings"]) for r in rows)
    click.echo(f"graded {len(rows) - failed} image(s), {failed} failed, {warned} with quality warnings; wrote {out_csv}")


def _serve_option(field: str, **kw: Any) -> Any:
    """`--field-name` for a ServeConfig field, with the library's default (declared once, in the config)."""
    from sightx.serve.config import default

    return click.option(f"--{field.replace('_', '-')}", field, default=default(field), show_default=True, **kw)


@command()
@_model_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes it to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=min(4, default_workers()), show_default=True, help="Preprocessing threads.")
@click.option("--device", default="auto", show_default=True, help="auto (MPS, then CUDA, then CPU), cpu, cuda, cuda:1, mps.")
@_serve_option("max_batch", type=click.IntRange(1), help="Photos per model call, at most.")
@click.option(
    "--tune-batch/--no-tune-batch",
    default=True,
    show_default=True,
    help="At start, time batches up to --max-batch and use the size fastest per photo on this device.",
)
@_serve_option("batch_wait_ms", type=click.FloatRange(0), help="How long a batch waits to fill.")
@_serve_option("max_queue", type=click.IntRange(1), help="Requests whose body is in, being graded, before 503.")
@_serve_option("max_upload_mb", type=click.FloatRange(0, min_open=True), help="Request body limit.")
@_serve_option(
    "max_bodies_mb",
    type=click.FloatRange(0, min_open=True),
    help="Request bodies held in memory at once (being received or graded) before 503: bounds memory under many uploads.",
)
@_serve_option("max_files", type=click.IntRange(1), help="Photos per request.")
@_serve_option(
    "read_idle_s",
    type=click.FloatRange(0, min_open=True),
    help="Close a connection that sends nothing for this long, in its headers or body (408 in the body): stalled clients hold nothing.",
)
@_serve_option(
    "read_total_s",
    type=click.FloatRange(0, min_open=True),
    help="A request body must be all in this many seconds after its headers, else 408: bounds clients that send a byte at a time.",
)
@_serve_option(
    "max_per_client",
    type=click.IntRange(1),
    help="Requests in progress from one client address before 429 (behind a proxy every client has its address: raise it).",
)
@_serve_option(
    "max_photo_mp",
    type=click.FloatRange(0, min_open=True),
    help="Megapixels per photo, from its header, before decoding (fundus cameras stay under ~25): refuses decompression bombs.",
)
@_serve_option(
    "max_request_mp", type=click.FloatRange(0, min_open=True), help="Megapixels of all the photos of one request: bounds its decoding work."
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="A Host header name to serve besides the loopback names (repeatable; '*': any). Refuses DNS rebinding from web pages.",
)
@click.option("--token", envvar="SIGHTX_TOKEN", help="Require 'Authorization: Bearer TOKEN' on /v1/* (or set SIGHTX_TOKEN).")
@click.option(
    "--gradability-model",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A sightx-train --task gradability checkpoint: each result gets its score (gradability_model, 1 - P(Reject)).",
)
def serve(
    checkpoint: str,
    runtime: str,
    host: str,
    port: int,
    device: str,
    token: str | None,
    gradability_model: Path | None,
    allowed_hosts: tuple[str, ...],
    **kw: object,
) -> None:
    """Serve a web page and a REST API that grade fundus photos with CHECKPOINT's preprocessing."""
    from sightx.serve.config import LOOPBACK, ServeConfig
    from sightx.serve.server import run

    config = ServeConfig(token=token, allowed_hosts=(*LOOPBACK, *allowed_hosts), **kw)  # type: ignore[arg-type]
    run(checkpoint, host, port, device, config, lambda line: click.echo(line, err=True), gradability_model, runtime)


@command()
@click.argument("predictions", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--truth", required=True, type=click.Path(dir_okay=False, path_type=Path), help="testLabels.csv: image,level[,Usage].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the metrics as JSON.")
def score(predictions: Path, truth: Path, json_path: Path | None) -> None:
    """Score PREDICTIONS (image,level[,p0..p4|score]) as Kaggle did: quadratic weighted kappa per Usage split."""
    from sightx.evaluation.kaggle_score import format_score
    from sightx.evaluation.kaggle_score import score as run_score

    result = run_score(predictions, truth)
    if json_path is not None:
        import json

        from sightx.files.atomic import atomic_write_text

        try:
            atomic_write_text(json_path, json.dumps(result, indent=1, allow_nan=False) + "\n")
        except OSError as e:
            raise click.ClickException(f"cannot write {json_path}: {e.strerror or e}") from None
    click.echo(format_score(result))
