"""Sources stage: the same images sharded from a folder, a zip, the split parts, the competition zip
and a tar, each as a ratio against the folder measured in the same run (issue 12's targets).

Rates are steady state, as in the shard stage: each repetition, a fresh process, also shards a
start-up set (one image per worker) packed in the same kind of archive, and the full run's extra
images over its extra time is the rate. What is taken out is what does not grow with the archive
(interpreter imports, pool spawn, opening the archive); what stays in is everything that does
(listing, the competition zip's inflated tail, reading, decoding). A read-only pass (the source's
own `stream`, no decoding) gives each reader's MB/s; every source's outputs are checked
byte-identical to the folder's. Then what a user feels: "unzip the outer zip, join the parts,
extract, then shard" against sharding the download as it is, in seconds and extra disk.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sightx.bench.inputs import Inputs
from sightx.bench.isolate import isolated
from sightx.bench.options import BenchOptions
from sightx.bench.shard import summarise
from sightx.bench.stats import sig, spread

SOURCES = ("folder", "zip", "split parts", "competition zip", "tar")


def build_archives(raw: Path, root: Path) -> dict[str, str]:
    """The Kaggle-layout folder `raw` as every form of the download, under `root`.

    The competition zip is `sightx-synth --archive kaggle`'s (deflated outer members, the Zip64
    train.zip byte-split in five); the parts and the joined zip are its members, as a user who
    unzipped the outer zip, or also joined the parts, has them.
    """
    from sightx.labels.files import LABEL_FILE
    from sightx.synth.archive import write_kaggle

    kaggle = root / "kaggle"
    shutil.copytree(raw, kaggle)  # follows links: write_kaggle consumes the loose files
    competition = write_kaggle(kaggle)
    parts, joined = root / "parts", root / "zip"
    parts.mkdir()
    joined.mkdir()
    with zipfile.ZipFile(competition) as zf, open(joined / "train.zip", "wb") as whole:
        for name in sorted(n for n in zf.namelist() if n.startswith("train.zip.")):
            data = zf.read(name)
            (parts / name).write_bytes(data)
            whole.write(data)
        labels = zf.read("trainLabels.csv.zip")
    for folder in (parts, joined):
        (folder / "trainLabels.csv.zip").write_bytes(labels)
    tar = root / "tar" / "train.tar"
    tar.parent.mkdir()
    with tarfile.open(tar, "w", dereference=True) as tf:
        tf.add(raw / "train", "train")
    shutil.copyfile(raw / LABEL_FILE, tar.parent / LABEL_FILE)
    return {
        "folder": str(raw),
        "zip": str(joined / "train.zip"),
        "split parts": str(parts / "train.zip.001"),
        "competition zip": str(competition),
        "tar": str(tar),
    }


@dataclass(frozen=True)
class SourceMeasure:
    """One repetition of one source at one worker count: what its process needs."""

    full: str
    startup: str
    workers: int
    shard_size: int
    size: int
    quality: int
    warmup: bool
    scratch: str


def _shard(source: str, out: Path, workers: int, shard_size: int, size: int, quality: int) -> dict[str, Any]:
    from sightx.image.preprocess import PreprocessOptions
    from sightx.shard import ShardOptions, run

    shutil.rmtree(out, ignore_errors=True)
    opts = ShardOptions(PreprocessOptions(size=size, quality=quality), shard_size=shard_size, workers=workers, progress=False)
    return run(Path(source), out, opts)


def outputs_digest(out: Path) -> str:
    """sha256 of everything a run wrote but its timings: equal digests, byte-identical outputs."""
    from sightx.contracts import manifest as mf

    m = json.loads((out / mf.MANIFEST).read_text())
    m.pop("run")
    h = hashlib.sha256(json.dumps(m, sort_keys=True).encode())
    for path in sorted(p for p in out.iterdir() if p.is_file() and p.name != mf.MANIFEST):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def read_pass(source: str) -> tuple[float, int]:
    """Seconds and member bytes of reading every image once through the source, nothing decoded."""
    from sightx.sources import open_source

    start = time.perf_counter()
    src = open_source(Path(source))
    total = 0
    for _, data in src.stream([m.name for m in src.members()]):
        if isinstance(data, bytes):
            total += len(data)
    return time.perf_counter() - start, total


def measure(m: SourceMeasure) -> dict[str, Any]:
    """An untimed start-up run (imports, lazy set-up), a timed start-up run, the timed full run,
    then the read-only pass."""
    out = Path(m.scratch)
    if m.warmup:
        _shard(m.startup, out, m.workers, 1, m.size, m.quality)
    start = time.perf_counter()
    _shard(m.startup, out, m.workers, 1, m.size, m.quality)  # one shard per image: every worker starts
    startup_s = time.perf_counter() - start
    start = time.perf_counter()
    manifest = _shard(m.full, out, m.workers, m.shard_size, m.size, m.quality)
    full_s = time.perf_counter() - start
    digest = outputs_digest(out)
    shutil.rmtree(out, ignore_errors=True)
    read_s, read_bytes = read_pass(m.full)
    return {
        "full_s": [full_s],
        "startup_s": [startup_s],
        "read_s": [read_s],
        "read_bytes": read_bytes,
        "written": manifest["summary"]["written"],
        "digests": [digest],
    }


@dataclass(frozen=True)
class Unpacked:
    """The user's way today against SightX's, from the same download: what a process needs."""

    competition: str
    warmup: str  # a small archive sharded first, untimed, so neither path pays the imports
    workers: int
    shard_size: int
    size: int
    quality: int
    scratch: str


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def unpack_then_shard(u: Unpacked) -> dict[str, Any]:
    """Unzip the outer zip, join the parts, extract train.zip and the labels (Python's zipfile, as
    `unzip` would), then shard the folder; nothing deleted on the way, so the extra disk is what
    the unpacked copies occupy together. Then shard the download itself. Seconds for both."""
    scratch = Path(u.scratch)
    _shard(u.warmup, scratch / "out", u.workers, 1, u.size, u.quality)
    stage = scratch / "unpacked"
    shutil.rmtree(stage, ignore_errors=True)
    start = time.perf_counter()
    with zipfile.ZipFile(u.competition) as zf:
        zf.extractall(stage)
    with open(stage / "train.zip", "wb") as joined:
        for part in sorted(stage.glob("train.zip.0*")):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, joined, 1 << 20)
    for inner in ("train.zip", "trainLabels.csv.zip"):
        with zipfile.ZipFile(stage / inner) as zf:
            zf.extractall(stage)
    unpack_s = time.perf_counter() - start
    extra = _du(stage)
    _shard(str(stage / "train"), scratch / "out", u.workers, u.shard_size, u.size, u.quality)
    classic_s = time.perf_counter() - start
    shutil.rmtree(stage)
    start = time.perf_counter()
    _shard(u.competition, scratch / "out", u.workers, u.shard_size, u.size, u.quality)
    direct_s = time.perf_counter() - start
    shutil.rmtree(scratch / "out", ignore_errors=True)
    return {"classic_s": [classic_s], "unpack_s": [unpack_s], "direct_s": [direct_s], "extra_bytes": extra}


def stage(opts: BenchOptions, inputs: Inputs, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Every source at 1 and --workers workers, the sources taking turns within each repetition."""
    full = build_archives(Path(inputs.full.raw), work / "archives")
    startup = build_archives(Path(inputs.startup.raw), work / "archives-startup")
    n, k, mb = len(inputs.full.files), len(inputs.startup.files), inputs.full.bytes() / 1e6
    counts = opts.worker_counts()
    jobs = {
        (name, w): SourceMeasure(
            full[name], startup[name], w, opts.shard_size_for(w, "sightx"), opts.size, opts.quality, opts.warmup, str(work / "out-sources")
        )
        for w in counts
        for name in SOURCES
    }
    top = counts[-1]
    unpacked = Unpacked(
        full["competition zip"],
        startup["competition zip"],
        top,
        opts.shard_size_for(top, "sightx"),
        opts.size,
        opts.quality,
        str(work / "unpack"),
    )
    raw: dict[tuple[str, int], dict[str, Any]] = {}
    user: dict[str, Any] = {}
    for rep in range(1, opts.reps + 1):
        for key, m in jobs.items():
            _merge(raw.setdefault(key, {}), isolated(measure, m))
        _merge(user, isolated(unpack_then_shard, unpacked))
        log(f"sources repetition {rep}/{opts.reps} of every source done")
    rows: dict[str, Any] = {}
    for name in SOURCES:
        runs = {}
        for w in counts:
            r = raw[(name, w)]
            runs[str(w)] = {
                **summarise({**r, "field_fill": None}, n, k, w, mb),
                "read_mb_per_s": sig(r["read_bytes"] / 1e6 / statistics.median(r["read_s"])),
            }
            runs[str(w)].pop("field_fill")
            log(f"sources {name:<16} {w} worker(s): {runs[str(w)]['images_per_s']['median']} images/s")
        # Per worker count: the shard size, hence the outputs, differ between counts.
        same = all(len(set(raw[(name, w)]["digests"] + raw[("folder", w)]["digests"])) == 1 for w in counts)
        rows[name] = {"path": str(Path(full[name]).relative_to(work)), "runs": runs, "same_bytes_as_folder": same}
    ratio = {
        name: {
            str(w): sig(rows[name]["runs"][str(w)]["images_per_s"]["median"] / rows["folder"]["runs"][str(w)]["images_per_s"]["median"], 3)
            for w in counts
        }
        for name in SOURCES
    }
    for r in ratio.values():
        r["top"] = r[str(top)]
    if not all(row["same_bytes_as_folder"] for row in rows.values()):
        log("sources WARNING: some source's outputs differ from the folder's")
    competition_mb = Path(full["competition zip"]).stat().st_size / 1e6
    return {
        "input": inputs.describe(),
        "worker_counts": list(counts),
        "shard_size": {str(w): opts.shard_size_for(w, "sightx") for w in counts},
        "recipe": {"size": opts.size, "quality": opts.quality},
        "sources": rows,
        "ratio": ratio,
        "download": {
            "workers": top,
            "download_mb": round(competition_mb, 1),
            "unpack_then_shard_s": spread(user["classic_s"]),
            "unpack_s": spread(user["unpack_s"]),
            "direct_s": spread(user["direct_s"]),
            "unpacked_extra_mb": round(user["extra_bytes"] / 1e6, 1),
            "unpacked_extra_x_download": sig(user["extra_bytes"] / 1e6 / competition_mb, 2),
        },
    }


def _merge(into: dict[str, Any], rep: dict[str, Any]) -> None:
    """One process's repetition into a figure's lists: times pooled, facts and memory kept."""
    for key, value in rep.items():
        if isinstance(value, list):
            into.setdefault(key, []).extend(value)
        elif key == "peak_rss_mb":
            into[key] = max(into.get(key, 0.0), value)
        else:
            into[key] = value
