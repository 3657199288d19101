"""The full-resolution files every shard engine reads, and a one-image-per-worker copy for start-up.

Both are Kaggle-layout folders (train/*.jpeg + trainLabels.csv) so the SightX engine reads them as
it would a real archive; baselines get the same file list.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sightx.bench.options import BenchError, BenchOptions

# sightx.labels (pandas) is imported where used: measurement workers unpickle InputSet, and a
# baseline's workers should weigh what a user's script would.


@dataclass(frozen=True)
class InputSet:
    """A Kaggle-layout folder: raw/train/*.jpeg and raw/trainLabels.csv (absent when unlabelled)."""

    raw: str
    files: tuple[str, ...]
    labelled: bool

    @property
    def train(self) -> str:
        return str(Path(self.raw) / "train")

    def bytes(self) -> int:
        return sum(Path(f).stat().st_size for f in self.files)


@dataclass(frozen=True)
class Inputs:
    full: InputSet
    startup: InputSet  # one image per worker: the start-up cost of each engine
    synthetic: bool

    def describe(self) -> dict[str, Any]:
        return {
            "images": len(self.full.files),
            "mb": round(self.full.bytes() / 1e6, 1),
            "synthetic": self.synthetic,
            "startup_images": len(self.startup.files),
        }


def prepare(opts: BenchOptions, work: Path) -> Inputs:
    """Generate (or link from --input) the bench images, once per run."""
    from sightx.labels.files import LABEL_FILE
    from sightx.labels.formats import read_labels
    from sightx.sources.folder import find_images

    raw = work / "raw"
    if opts.input is None:
        from sightx.synth.generate import SynthOptions, generate

        generate(raw, SynthOptions(n=opts.images, seed=opts.seed, sizes=opts.camera_sizes, workers=opts.workers, progress=False))
        labels: dict[str, int] | None = read_labels(raw / LABEL_FILE)
        sources = find_images(raw / "train")
    else:
        labels, sources = _existing(Path(opts.input), opts.images)
        _link(sources, raw, labels)
    full = _set(raw, labels)
    for f in full.files:  # into the page cache: every engine then reads from memory alike
        Path(f).read_bytes()
    startup_raw = work / "raw-startup"
    _link([Path(f) for f in full.files[: opts.workers]], startup_raw, labels)
    return Inputs(full, _set(startup_raw, labels), opts.input is None)


def _existing(folder: Path, n: int) -> tuple[dict[str, int] | None, list[Path]]:
    """The first n images of a user's folder; only labelled ones when it has labels, since
    the engine drops unlabelled images before decoding and the baselines would not."""
    from sightx.labels.files import find_label_file
    from sightx.labels.formats import read_labels
    from sightx.labels.ids import image_id
    from sightx.sources.folder import find_images

    if not folder.is_dir():
        raise BenchError(f"--input {folder} is not a folder")
    label_path = find_label_file(folder)
    labels = read_labels(label_path) if label_path else None
    images = [p for p in find_images(folder) if labels is None or image_id(p) in labels]
    if len(images) < n:
        raise BenchError(f"--input {folder} has {len(images)} usable JPEGs, fewer than --images {n}")
    return labels, images[:n]


def _link(sources: list[Path], raw: Path, labels: dict[str, int] | None) -> None:
    """Symlink the files into a Kaggle layout (copy where links are not allowed)."""
    from sightx.labels.files import LABEL_FILE
    from sightx.labels.ids import image_id

    train = raw / "train"
    train.mkdir(parents=True, exist_ok=True)
    for src in sources:
        dst = train / src.name
        try:
            dst.symlink_to(src.resolve())
        except OSError:
            shutil.copyfile(src, dst)
    if labels is not None:
        rows = "".join(f"{image_id(p)},{labels[image_id(p)]}\n" for p in sources)
        (raw / LABEL_FILE).write_text("image,level\n" + rows)


def _set(raw: Path, labels: dict[str, int] | None) -> InputSet:
    from sightx.sources.folder import find_images

    return InputSet(str(raw), tuple(str(p) for p in find_images(raw / "train")), labels is not None)
