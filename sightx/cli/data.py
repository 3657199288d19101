"""The data commands: sightx-synth, sightx-shard, sightx-verify, sightx-explore, sightx-fetch, sightx-doctor."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sightx.cli.common import command, parse_sizes
from sightx.parallel.pool import default_workers
from sightx.synth.layouts import LAYOUTS


@command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n", type=click.IntRange(0), default=40, show_default=True, help="Labelled images (both eyes per patient).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, byte-identical files.")
@click.option("--size", "sizes", multiple=True, callback=parse_sizes, help="WxH, repeatable; default: the EyePACS camera mix.")
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
    from sightx.doctor import fetch as kaggle_fetch
    from sightx.doctor.system import human

    opts = kaggle_fetch.FetchOptions(competition=competition, to=to, size=size, shards=shards)
    if check:
        left = kaggle_fetch.preflight(opts)
        click.echo(f"ready: token, {to} writable, disk enough; {human(left)} to download")
        return
    path = kaggle_fetch.fetch(opts)
    click.echo(f"verified {path}; next: sightx-shard {path} {shards}/")
