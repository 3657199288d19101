"""Shard speed from each form of the download, and what unzipping first costs (README evidence, issue 12).

usage: python tools/source_bench.py [IMAGES] [REPS] [WORK]

Renders IMAGES synthetic photos at the EyePACS camera mix (default 64), packs them as Kaggle's
download (sightx-synth --archive kaggle), and times `sightx-shard` (512 px, the defaults) from the
folder of loose JPEGs, from the byte-split train.zip.00N parts, and from the competition zip
itself, at 1 and 2 workers: each run a fresh process, the sources taking turns, the run's own
elapsed time (manifest `run` block: listing, planning, building; interpreter start-up excluded),
median of REPS. Then the path a user takes today, "unzip the outer zip, join the parts, extract,
then shard", against sharding straight from the zip: seconds end to end and peak extra disk.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from sightx.synth.archive import KAGGLE_ZIP, write_kaggle
from sightx.synth.generate import SynthOptions, generate

BIN = Path(sys.executable).parent


def shard(source: Path, out: Path, workers: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(BIN / "sightx-shard"), str(source), str(out), "--workers", str(workers), "--shard-size", str(max(1, 64 // (8 * workers)))]
    subprocess.run([*cmd, "--quiet"], check=True, capture_output=True)
    return json.loads((out / "manifest.json").read_text())["run"]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    work = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(tempfile.mkdtemp(prefix="source-bench-"))
    folder, kaggle, parts = work / "folder", work / "kaggle", work / "parts"
    if not (kaggle / KAGGLE_ZIP).exists():
        generate(folder, SynthOptions(n=n, seed=12, workers=2, progress=False))
        shutil.copytree(folder, kaggle)
        write_kaggle(kaggle)
        parts.mkdir()
        with zipfile.ZipFile(kaggle / KAGGLE_ZIP) as zf:
            for name in zf.namelist():
                if name.startswith("train.zip.") or name == "trainLabels.csv.zip":
                    (parts / name).write_bytes(zf.read(name))
    sources = {"folder": folder / "train", "split parts": parts / "train.zip.001", "competition zip": kaggle / KAGGLE_ZIP}
    runs: dict[tuple[str, int], list[dict]] = {}
    for _ in range(reps):
        for workers in (1, 2):
            for name, source in sources.items():
                runs.setdefault((name, workers), []).append(shard(source, work / "out", workers))
    print(f"{n} images, {du(folder / 'train') / 1e6:.1f} MB of JPEGs; median of {reps} (min-max)\n")
    print("| source | images/s, 1 worker | images/s, 2 workers | x folder (1 w / 2 w) | input MB/s (2 w) |")
    print("|---|---|---|---|---|")
    med = {k: statistics.median(r["images_per_s"] for r in v) for k, v in runs.items()}
    for name in sources:
        cells = []
        for w in (1, 2):
            rates = [r["images_per_s"] for r in runs[name, w]]
            cells.append(f"{med[name, w]:.1f} ({min(rates):.1f}-{max(rates):.1f})")
        ratio = f"{med[name, 1] / med['folder', 1]:.2f} / {med[name, 2] / med['folder', 2]:.2f}"
        mbps = statistics.median(r["input_mb_per_s"] for r in runs[name, 2])
        print(f"| {name} | {cells[0]} | {cells[1]} | {ratio} | {mbps:.1f} |")

    # What a user does today, against sharding the download as it is (2 workers).
    stage = work / "unzipped"
    shutil.rmtree(stage, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(["unzip", "-q", str(kaggle / KAGGLE_ZIP), "-d", str(stage)], check=True)
    with open(stage / "train.zip", "wb") as joined:
        for part in sorted(stage.glob("train.zip.0*")):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, joined, 1 << 20)
    subprocess.run(["unzip", "-q", str(stage / "train.zip"), "-d", str(stage)], check=True)
    subprocess.run(["unzip", "-q", str(stage / "trainLabels.csv.zip"), "-d", str(stage)], check=True)
    extra = du(stage)
    unpacked = time.perf_counter() - start
    shard(stage / "train", work / "out", 2)
    classic = time.perf_counter() - start
    shutil.rmtree(stage)
    start = time.perf_counter()
    shard(kaggle / KAGGLE_ZIP, work / "out", 2)
    direct = time.perf_counter() - start
    zip_mb = (kaggle / KAGGLE_ZIP).stat().st_size / 1e6
    print(f"\nend to end from the {zip_mb:.1f} MB download, 2 workers (wall clock, interpreter start-ups included):\n")
    print("| path | seconds | peak extra disk |")
    print("|---|---|---|")
    print(f"| unzip outer zip, join parts, extract, then shard | {classic:.1f} (unpacking {unpacked:.1f}) | {extra / 1e6:.1f} MB |")
    print(f"| sightx-shard straight from the zip | {direct:.1f} | none: no copy of any member or part (spools hold output only) |")


if __name__ == "__main__":
    main()
