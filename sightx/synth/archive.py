"""Pack a generated set the way Kaggle ships it, so a user rehearses exactly what the real download needs.

`kaggle competitions download -c diabetic-retinopathy-detection` gives one zip whose members are
each deflated: `sample.zip`, `sampleSubmission.csv.zip`, `trainLabels.csv.zip`, and the byte-split
parts of the Zip64 `train.zip` (5 parts) and `test.zip` (7 parts) holding `train/` and `test/`.
The zip is written under a temporary name and renamed when complete; the loose images it was made
from are removed (the download has none), the ground truth (synthTruth.csv) stays beside it.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path
from typing import BinaryIO

KAGGLE_ZIP = "diabetic-retinopathy-detection.zip"
TRAIN_PARTS, TEST_PARTS = 5, 7
SAMPLE_IMAGES = 10
_DATE = (2015, 2, 17, 0, 0, 0)  # fixed: the same seed gives a byte-identical zip
_CHUNK = 1 << 20


def _entry(name: str, compression: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, _DATE)
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    return info


def _zip_of(files: list[tuple[str, Path]], target: BinaryIO | Path) -> None:
    """A Zip64 zip of deflated members, as Kaggle's train.zip and test.zip are."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, path in files:
            with zf.open(_entry(name), "w", force_zip64=True) as f:
                f.write(path.read_bytes())


def _small_zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(_entry(name), data)
    return buf.getvalue()


def _add_parts(outer: zipfile.ZipFile, inner: Path, parts: int) -> None:
    """inner's bytes split into `parts` equal parts (the last shorter) as members NAME.001 ..."""
    size = inner.stat().st_size
    step = max(1, -(-size // parts))
    with open(inner, "rb") as f:
        for i in range(min(parts, -(-size // step))):
            with outer.open(_entry(f"{inner.name}.{i + 1:03d}"), "w", force_zip64=True) as part:
                left = min(step, size - i * step)
                while left:
                    block = f.read(min(_CHUNK, left))
                    part.write(block)
                    left -= len(block)


def write_kaggle(out: Path) -> Path:
    """Replace the loose layout in `out` (train/, test/, trainLabels.csv) by the competition zip."""
    train = sorted((out / "train").glob("*.jpeg"))
    test = sorted((out / "test").glob("*.jpeg")) if (out / "test").is_dir() else []
    labels = (out / "trainLabels.csv").read_bytes()
    submission = "image,level\n" + "".join(f"{p.stem},0\n" for p in test)
    final = out / KAGGLE_ZIP
    tmp = out / f".{KAGGLE_ZIP}.tmp"
    inners = [(out / "train.zip", [(f"train/{p.name}", p) for p in train], TRAIN_PARTS)]
    if test:
        inners.append((out / "test.zip", [(f"test/{p.name}", p) for p in test], TEST_PARTS))
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as outer:
            outer.writestr(_entry("sample.zip"), _sample_zip(train))
            outer.writestr(_entry("sampleSubmission.csv.zip"), _small_zip("sampleSubmission.csv", submission.encode()))
            outer.writestr(_entry("trainLabels.csv.zip"), _small_zip("trainLabels.csv", labels))
            for inner, files, parts in inners:
                _zip_of(files, inner)
                _add_parts(outer, inner, parts)
                inner.unlink()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
        for inner, _, _ in inners:
            inner.unlink(missing_ok=True)
    for folder in ("train", "test"):
        shutil.rmtree(out / folder, ignore_errors=True)
    (out / "trainLabels.csv").unlink()
    return final


def _sample_zip(train: list[Path]) -> bytes:
    buf = io.BytesIO()
    _zip_of([(f"sample/{p.name}", p) for p in train[:SAMPLE_IMAGES]], buf)
    return buf.getvalue()
