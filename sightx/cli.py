"""Command-line entry points: parse, call the library, print. No logic lives here.

Over 400 lines for one reason: a dozen commands each declare their options here, in click's
decorators, where `--help` reads them without importing the library.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import click

from sightx.errors import SightXError
from sightx.parallel.pool import default_workers
from sightx.synth.layouts import LAYOUTS


class _Command(click.Command):
    """Every SightX problem (a SightXError) becomes click's one-line `Error: ...` and exit status 1, here only."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SightXError as e:
            raise click.ClickException(str(e)) from None


command = partial(click.command, cls=_Command, context_settings={"help_option_names": ["-h", "--help"]})


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


@command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n", type=click.IntRange(0), default=40, show_default=True, help="Labelled images (both eyes per patient).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, byte-identical files.")
@click.option("--size", "sizes", multiple=True, callback=_size, help="WxH, repeatable; default: the EyePACS camera mix.")
@click.option("--quality", type=click.IntRange(30, 100), default=90, show_default=True, help="JPEG quality.")
@click.option("--balanced", is_flag=True, help="Equal grade frequencies instead of EyePACS' 73% grade 0.")
@click.option("--corrupt", type=click.IntRange(0), default=0, show_default=True, help="Also write K broken inputs.")
@click.option("--with-test", "n_test", type=click.IntRange(0), default=0, show_default=True, help="Unlabelled test/ images, as Kaggle.")
@click.option("--ungradable", type=click.FloatRange(0, 1), default=0.015, show_default=True, help="Share of ungradable shots.")
@click.option(
    "--archive",
    type=click.Choice(["folder", "kaggle", *LAYOUTS]),
    default="folder",
    show_default=True,
    help="kaggle: pack it as the competition download, OUT/diabetic-retinopathy-detection.zip (split train.zip/test.zip parts inside); "
    "aptos, idrid, messidor2, ddr: lay it out as that dataset is distributed (label file, image format, ungradable marks).",
)
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
    archive: str,
    workers: int,
    quiet: bool,
) -> None:
    """Generate a synthetic EyePACS set in the Kaggle layout: OUT/train/*.jpeg, OUT/trainLabels.csv
    (or, with --archive kaggle, packed as Kaggle's download)."""
    from sightx.synth.archive import write_kaggle
    from sightx.synth.generate import SynthOptions, generate
    from sightx.synth.layouts import write_layout

    if n_test and archive in LAYOUTS:
        raise click.BadParameter(f"the {archive} layout has no unlabelled test folder: drop --with-test", param_hint="--with-test")

    opts = SynthOptions(
        n=n,
        seed=seed,
        sizes=sizes,
        quality=quality,
        balanced=balanced,
        workers=workers,
        corrupt=corrupt,
        n_test=n_test,
        ungradable_rate=ungradable,
        progress=not quiet,
    )
    start = time.perf_counter()
    try:
        summary = generate(out, opts)
        packed = write_kaggle(out) if archive == "kaggle" else None
        layout = write_layout(out, archive, seed) if archive in LAYOUTS else None
    except OSError as e:
        raise click.ClickException(f"cannot write to {out}: {e.strerror or e}") from None
    elapsed = time.perf_counter() - start
    grades = " ".join(f"{g}:{c}" for g, c in summary.grades.items())
    click.echo(
        f"wrote {summary.train} train + {summary.test} test + {summary.corrupt} corrupt images to {packed or out} "
        f"({(packed.stat().st_size if packed else summary.bytes) / 1e6:.1f} MB) in {elapsed:.1f}s; grades {grades}"
    )
    if layout is not None:
        click.echo(
            f"as {archive} distributes it; shard with: sightx-shard '{layout.images}' shards/"
            + (f" --labels '{layout.labels}'" if layout.labels else "")
        )


def _quality_rules(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[tuple[str, float], ...]:
    """Parse 'brightness=20,sharpness=5' or 'gradability=0.5' into (gate, minimum) rules."""
    from sightx.shard.task import GATES

    rules = []
    for part in filter(None, (value or "").split(",")):
        name, _, threshold = part.partition("=")
        try:
            rules.append((name.strip(), float(threshold)))
        except ValueError:
            raise click.BadParameter(f"{part!r} is not METRIC=VALUE") from None
        if name.strip() not in GATES:
            raise click.BadParameter(f"unknown metric {name!r}; choose from {', '.join(GATES)}")
    return tuple(rules)


@command()
@click.argument("raw", metavar="SOURCE", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path), default=Path("shards"))
@click.option(
    "--labels",
    type=click.Path(dir_okay=False),
    help="Label CSV (image,level), or trainLabels.csv.zip; default: trainLabels.csv(.zip) beside SOURCE or inside the competition zip.",
)
@click.option(
    "--label-format",
    type=click.Choice(["auto", "eyepacs", "aptos", "idrid", "messidor2", "ddr", "eyeq"]),
    default="auto",
    show_default=True,
    help="Label file format; auto detects it from the header (DDR: '<file> <grade>' lines, 5 = ungradable; "
    "eyeq: image,quality with 0 Good / 1 Usable / 2 Reject, shards for --task gradability).",
)
@click.option(
    "--unlabeled",
    is_flag=True,
    help="Write images without a label into a 'test' split instead of rejecting them; from the competition zip: its test images.",
)
@click.option("--size", type=click.IntRange(32, 4096), default=512, show_default=True, help="Output side in pixels.")
@click.option("--normalize", type=click.Choice(["graham", "clahe", "none"]), default="graham", show_default=True)
@click.option("--quality", type=click.IntRange(50, 100), default=95, show_default=True, help="Output JPEG quality.")
@click.option(
    "--chroma",
    type=click.Choice(["420", "444"]),
    default="420",
    show_default=True,
    help="JPEG colour resolution: 420 halves it (the usual default), 444 keeps it (40% larger shards).",
)
@click.option("--shard-size", type=click.IntRange(1), default=1000, show_default=True, help="Samples per shard.")
@click.option("--val-fraction", type=click.FloatRange(0, 0.9), default=0.1, show_default=True, help="Share of patients held out.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the split and the shuffling.")
@click.option(
    "--gate",
    callback=_quality_rules,
    help="Reject below these minimums, e.g. 'gradability=0.5' (reason ungradable) or 'brightness=15,sharpness=2' (low-quality). "
    "Default: every score recorded, nothing rejected.",
)
@click.option("--min-quality", callback=_quality_rules, help="The same rules as --gate (its earlier name); both may be given.")
@click.option("--max-pixels", type=click.IntRange(1), default=60_000_000, show_default=True, help="Reject larger images from the header.")
@click.option("--workers", type=click.IntRange(1), default=default_workers(), show_default=True, help="Pool or dask-local processes.")
@click.option(
    "--executor",
    type=click.Choice(["pool", "dask", "dask-local"]),
    default="pool",
    show_default=True,
    help="Where shards are built: a local process pool, an existing Dask cluster (--scheduler), or a local Dask cluster.",
)
@click.option("--scheduler", metavar="ADDRESS", help="Dask scheduler for --executor dask, e.g. tcp://HOST:8786.")
@click.option("--overwrite", is_flag=True, help="Replace shards made with other options.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def shard(
    raw: Path,
    out: Path,
    labels: str | None,
    label_format: str,
    unlabeled: bool,
    size: int,
    normalize: str,
    quality: int,
    chroma: str,
    shard_size: int,
    val_fraction: float,
    seed: int,
    gate: tuple[tuple[str, float], ...],
    min_quality: tuple[tuple[str, float], ...],
    max_pixels: int,
    workers: int,
    executor: str,
    scheduler: str | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Preprocess the fundus JPEGs in SOURCE into WebDataset shards in OUT (default: shards/).

    SOURCE is a folder, a zip, byte-split zip parts (train.zip.001 or their folder), Kaggle's
    diabetic-retinopathy-detection.zip as downloaded, or a tar (.tar, .tar.gz): read in place,
    nothing is extracted."""
    from sightx.image.preprocess import PreprocessOptions
    from sightx.shard import ShardError, ShardInterrupted, ShardOptions, format_summary, nothing_written, run

    pre = PreprocessOptions(size=size, normalize=normalize, quality=quality, chroma=chroma, max_pixels=max_pixels)
    opts = ShardOptions(
        preprocess=pre,
        shard_size=shard_size,
        val_fraction=val_fraction,
        seed=seed,
        unlabeled=unlabeled,
        min_quality=min_quality + gate,
        labels=labels,
        label_format=label_format,
        workers=workers,
        overwrite=overwrite,
        progress=not quiet,
        executor=executor,
        scheduler=scheduler,
    )
    try:
        result = run(raw, out, opts)
    except ShardInterrupted as e:
        click.echo(str(e), err=True)
        raise SystemExit(130) from None
    click.echo(format_summary(result, out))
    empty = nothing_written(result, out)
    if empty:
        raise ShardError(empty)


def _floats(n: int | None) -> Any:
    """A click callback parsing 'A,B[,...]' into a tuple of floats (n of them when n is given); None stays None."""

    def parse(_ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
        if value is None:
            return None
        try:
            out = tuple(float(v) for v in value.split(","))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not comma-separated numbers") from None
        if n is not None and len(out) != n:
            raise click.BadParameter(f"{value!r}: expected {n} numbers")
        return out

    return parse


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
@click.option("--out", default="runs/default", show_default=True, help="Run folder: metrics.jsonl, last.pt, best.pt, PNGs.")
@click.option(
    "--task",
    type=click.Choice(["grade", "gradability"]),
    default="grade",
    show_default=True,
    help="grade: DR grades 0-4; gradability: a 3-way Good/Usable/Reject classifier on shards made with --label-format eyeq.",
)
@click.option("--recipe", help="Start from a published recipe's settings (huang2023, kaggle2015-o_O, quick); flags given still win.")
@click.option("--list-recipes", is_flag=True, expose_value=False, is_eager=True, callback=_list_recipes, help="Print the recipes and exit.")
@click.option(
    "--arch",
    default="resnet50",
    show_default=True,
    help="Any torchvision ResNet, EfficientNet or ConvNeXt by its torchvision name: resnet18..152, efficientnet_b0..b7, "
    "efficientnet_v2_s/m/l, convnext_tiny/small/base/large.",
)
@click.option(
    "--head",
    type=click.Choice(["classify", "regress"]),
    default="classify",
    show_default=True,
    help="5-way cross-entropy, or one score with MSE and kappa-optimised thresholds.",
)
@click.option("--weights", default="none", show_default=True, help="none, imagenet (local torch cache only) or a weights file.")
@click.option("--image-size", type=click.IntRange(32, 2048), default=512, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=3e-4, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(0), default=0.05, show_default=True)
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True)
@click.option("--schedule", type=click.Choice(["cosine", "onecycle"]), default="cosine", show_default=True)
@click.option("--warmup-epochs", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option(
    "--balance",
    type=click.Choice(["loss", "sample", "progressive", "none"]),
    default="progressive",
    show_default=True,
    help="Counter the grade imbalance: resampling decaying towards the natural mix (default, best measured kappa), "
    "in the loss, by resampling, or not at all.",
)
@click.option(
    "--balance-decay", type=click.FloatRange(0, 1), default=0.7, show_default=True, help="progressive: share of balancing kept per epoch."
)
@click.option("--workers", type=click.IntRange(0), default=min(8, default_workers()), show_default=True, help="DataLoader workers.")
@click.option("--shuffle-buffer", type=click.IntRange(0), default=1000, show_default=True)
@click.option(
    "--max-bad-samples",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="Corrupt samples skipped (and counted in metrics.jsonl) per epoch's train or val pass before the run stops.",
)
@click.option(
    "--min-gradability",
    type=click.FloatRange(0, 1),
    help="Skip samples whose gradability score (recorded by sightx-shard) is below this, in training and validation; "
    "counted per epoch in metrics.jsonl.  [default: keep all]",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto (MPS, then CUDA, then CPU), cpu, cuda, cuda:1, mps.")
@click.option("--amp", type=click.Choice(["auto", "off", "bf16", "fp16"]), default="auto", show_default=True)
@click.option(
    "--normalization",
    default="imagenet",
    show_default=True,
    help="Input statistics: imagenet, eyepacs (Huang et al. 2023), or M,M,M/S,S,S; recorded in the checkpoint for grading.",
)
@click.option(
    "--rotate", type=click.FloatRange(0, 180), default=180.0, show_default=True, help="Augmentation: rotation, degrees either way."
)
@click.option(
    "--translate", type=click.FloatRange(0, 1), default=0.04, show_default=True, help="Augmentation: shift, fraction of the side."
)
@click.option("--scale", callback=_floats(2), help="Augmentation: zoom range LOW,HIGH.  [default: 0.92,1.08]")
@click.option("--stretch", callback=_floats(2), help="Augmentation: aspect-ratio range LOW,HIGH.  [default: 1,1]")
@click.option("--brightness", type=click.FloatRange(0, 1), default=0.2, show_default=True, help="Augmentation: brightness jitter.")
@click.option("--contrast", type=click.FloatRange(0, 1), default=0.2, show_default=True, help="Augmentation: contrast jitter.")
@click.option("--saturation", type=click.FloatRange(0, 1), default=0.15, show_default=True, help="Augmentation: saturation jitter.")
@click.option(
    "--balance-end",
    callback=_floats(None),
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


@command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False, path_type=Path), help="best.pt or last.pt from sightx-train.")
@click.option("--out", "out_csv", default="predictions.csv", show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=default_workers(), show_default=True, help="Preprocessing processes.")
@click.option("--device", default="auto", show_default=True)
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
    checkpoint: Path,
    gradability_model: Path | None,
    out_csv: Path,
    batch_size: int,
    workers: int,
    device: str,
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
    grader = Grader(checkpoint, device)
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


@command()
@click.argument("shards", type=click.Path(path_type=Path), default=Path("shards"))
@click.option("--deep", is_flag=True, help="Also decode every image and check every sample's JSON against the sample format.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def verify(shards: Path, deep: bool, quiet: bool) -> None:
    """Check SHARDS (default: shards/) against its manifest: every shard present, size, sha256, members, keys, grade counts.

    Exit status 1 on any mismatch.
    """
    from sightx.contracts.verify import format_report
    from sightx.contracts.verify import verify as run_verify

    report = run_verify(shards, deep=deep, progress=not quiet)
    click.echo(format_report(report, shards))
    if not report.ok:
        raise SystemExit(1)


@command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Report folder; default: reports/<name of PATH>.")
@click.option("--per-grade", type=click.IntRange(1, 20), default=2, show_default=True, help="Gallery photos per grade.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the gallery and the sample.")
@click.option("--sample", type=click.IntRange(0), default=2000, show_default=True, help="Images measured for the properties; 0 = all.")
@click.option(
    "--labels",
    type=click.Path(dir_okay=False),
    help="Label file (trainLabels.csv[.zip] or another DR set's); default: found in or beside the source, as sightx-shard does.",
)
@click.option("--raw", type=click.Path(), help="Shards only: the raw folder or archive they were made from, for the before/after gallery.")
@click.option("--workers", type=click.IntRange(1), default=default_workers(), show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def explore(
    path: Path,
    out: Path | None,
    per_grade: int,
    seed: int,
    sample: int,
    labels: str | None,
    raw: str | None,
    workers: int,
    quiet: bool,
) -> None:
    """Report on raw photos (a folder, zip, split parts, the competition zip, a tar; with their labels) or a
    shard folder (manifest.json): HTML, PNG, JSON."""
    from sightx.explore import ExploreOptions, format_summary
    from sightx.explore import explore as run_explore

    out = out or Path("reports") / path.resolve().name
    opts = ExploreOptions(per_grade=per_grade, seed=seed, sample=sample, workers=workers, labels=labels, raw=raw, progress=not quiet)
    summary = run_explore(path, out, opts)
    click.echo(format_summary(summary, out))


@command()
@click.argument("stage", type=click.Choice(["shard", "load", "train", "sources", "serve", "all"]), default="all")
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
    help="ARCH:INPUT_PX:FIELD_PX served by the serve stage, repeatable.  [default: resnet18:160:256 (the demo's), resnet50:512:512]",
)
@click.option("--serve-clients", type=click.IntRange(1), help="Concurrent clients of the serve stage.  [default: 8]")
@click.option("--serve-requests", type=click.IntRange(1), help="Requests per model for the server's memory figure.  [default: 1000]")
@click.option("--serve-max-s", type=click.FloatRange(1), help="Seconds per model the memory run may take.  [default: 300]")
@click.option("--work", type=click.Path(file_okay=False), help="Keep the scratch files here instead of a temporary folder.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the full result as JSON.")
@click.option("--markdown", is_flag=True, help="Print the tables as Markdown, for the README.")
@click.option("--quick", is_flag=True, help="Smoke run on tiny images: checks the plumbing in seconds; the numbers mean nothing.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
def bench(stage: str, json_path: Path | None, markdown: bool, quick: bool, quiet: bool, **kw: object) -> None:
    """Throughput of SightX against naive PIL, OpenCV, img2dataset and ImageFolder; every source against a
    folder; the server's latency, throughput and memory: on this machine, baselines measured in the same run."""
    from sightx.bench import STAGES, BenchOptions, report, run_bench
    from sightx.files.atomic import atomic_write_text

    given = {k: v for k, v in kw.items() if v is not None and v != ()}
    given["stages"] = STAGES if stage == "all" else (stage,)
    opts = BenchOptions.smoke(**given) if quick else BenchOptions(**given)  # type: ignore[arg-type]
    result = run_bench(opts, log=(lambda _: None) if quiet else (lambda line: click.echo(line, err=True)))
    if json_path is not None:
        import json

        atomic_write_text(json_path, json.dumps(result, indent=1) + "\n")
    click.echo(report.render(result, markdown), nl=False)


@command()
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False, path_type=Path), help="best.pt or last.pt from sightx-train.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes it to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=min(4, default_workers()), show_default=True, help="Preprocessing threads.")
@click.option("--device", default="auto", show_default=True, help="auto (MPS, then CUDA, then CPU), cpu, cuda, cuda:1, mps.")
@click.option("--max-batch", type=click.IntRange(1), default=8, show_default=True, help="Photos per model call, at most.")
@click.option(
    "--tune-batch/--no-tune-batch",
    default=True,
    show_default=True,
    help="At start, time batches up to --max-batch and use the size fastest per photo on this device.",
)
@click.option("--batch-wait-ms", type=click.FloatRange(0), default=10.0, show_default=True, help="How long a batch waits to fill.")
@click.option("--max-queue", type=click.IntRange(1), default=16, show_default=True, help="Requests in progress before 503.")
@click.option("--max-upload-mb", type=click.FloatRange(0, min_open=True), default=40.0, show_default=True, help="Request body limit.")
@click.option("--max-files", type=click.IntRange(1), default=16, show_default=True, help="Photos per request.")
@click.option("--token", envvar="SIGHTX_TOKEN", help="Require 'Authorization: Bearer TOKEN' on /v1/* (or set SIGHTX_TOKEN).")
@click.option(
    "--gradability-model",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A sightx-train --task gradability checkpoint: each result gets its score (gradability_model, 1 - P(Reject)).",
)
def serve(checkpoint: Path, host: str, port: int, device: str, token: str | None, gradability_model: Path | None, **kw: object) -> None:
    """Serve a web page and a REST API that grade fundus photos with CHECKPOINT's preprocessing."""
    from sightx.serve.config import ServeConfig
    from sightx.serve.server import run

    config = ServeConfig(token=token, **kw)  # type: ignore[arg-type]
    run(checkpoint, host, port, device, config, lambda line: click.echo(line, err=True), gradability_model)


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

        atomic_write_text(json_path, json.dumps(result, indent=1) + "\n")
    click.echo(format_score(result))


@command()
@click.argument("data", nargs=-1, type=click.Path(path_type=Path))
@click.option("--size", type=click.IntRange(32, 4096), default=512, show_default=True, help="sightx-shard --size the disk estimate is for.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("shards"), show_default=True, help="Where the shards would go.")
@click.option("--download", is_flag=True, help="A Kaggle download is planned: token problems fail.")
@click.option("--quick", is_flag=True, help="Tiny compute step and photo: seconds; the rates mean little.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(data: tuple[Path, ...], size: int, out: Path, download: bool, quick: bool, as_json: bool) -> None:
    """Check this environment and DATA (folders, zips, split parts, the competition zip, tar): ok / warn / fail, with fixes.

    Without click or SightX's packages, run `python -m sightx.doctor` instead: same checks."""
    from sightx.doctor import Context, diagnose, failed, report

    results = diagnose(Context(data=data, size=size, out=out, download=download, quick=quick))
    click.echo(report.as_json(results) if as_json else report.text(results), nl=False)
    if failed(results):
        raise SystemExit(1)


@command()
@click.option("--competition", default="diabetic-retinopathy-detection", show_default=True)
@click.option("--to", type=click.Path(file_okay=False, path_type=Path), default=Path("data"), show_default=True, help="Download folder.")
@click.option("--size", type=click.IntRange(32, 4096), default=512, show_default=True, help="sightx-shard --size, for the disk estimate.")
@click.option("--shards", type=click.Path(file_okay=False, path_type=Path), default=Path("shards"), show_default=True)
@click.option("--check", is_flag=True, help="Only the checks before the network: token, write access, disk.")
def fetch(competition: str, to: Path, size: int, shards: Path, check: bool) -> None:
    """Download the Kaggle EyePACS competition zip (needs the optional kaggle package), then verify it."""
    from sightx.doctor.system import human
    from sightx.sources import fetch as kaggle_fetch

    opts = kaggle_fetch.FetchOptions(competition=competition, to=to, size=size, shards=shards)
    if check:
        left = kaggle_fetch.preflight(opts)
        click.echo(f"ready: token, {to} writable, disk enough; {human(left)} to download")
        return
    path = kaggle_fetch.fetch(opts)
    click.echo(f"verified {path}; next: sightx-shard {path} {shards}/")
