"""Write a generated set the way the other public DR sets distribute theirs (APTOS 2019, IDRiD
grading, Messidor-2, DDR), so `sightx-shard` is rehearsed on each as it comes.

Each replaces the Kaggle layout in OUT (train/, trainLabels.csv) and keeps the image ids and
synthTruth.csv. Where a set marks ungradable photos (Messidor-2's adjudicated_gradable 0, DDR's
grade 5), the generator's ungradable shots are marked so; APTOS and IDRiD grade every photo.
PNG copies are lossless re-encodes of the same pixels; a broken input stays the bytes it was.
OpenCV and numpy are imported where used: the CLI imports LAYOUTS for its options.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

from sightx.errors import SightXError
from sightx.files.atomic import atomic_write_bytes

LAYOUTS = ("aptos", "idrid", "messidor2", "ddr")
IDRID = Path("B. Disease Grading")
DDR = Path("DR_grading")
DDR_SPLITS = (("train", 0.5), ("valid", 0.2), ("test", 0.3))  # DDR's own proportions
DDR_UNGRADABLE = 5


@dataclass(frozen=True)
class Written:
    """Where the images are and the label file that goes with them (`None`: found beside them)."""

    images: Path
    labels: Path | None


def _put(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)


def _as_png(data: bytes) -> bytes:
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    return data if img is None else cv2.imencode(".png", img)[1].tobytes()


def _truth(out: Path) -> tuple[list[Path], dict[str, int], set[str]]:
    """The generated train images, their grades and the ids of ungradable shots."""
    images = sorted((out / "train").glob("*.jpeg"))
    with open(out / "trainLabels.csv", newline="") as f:
        grades = {row["image"]: int(row["level"]) for row in csv.DictReader(f)}
    with open(out / "synthTruth.csv", newline="") as f:
        ungradable = {Path(row["path"]).stem for row in csv.DictReader(f) if row.get("ungradable")}
    return images, grades, ungradable


def write_layout(out: Path, layout: str, seed: int = 0) -> Written:
    """Turn the Kaggle layout in `out` into `layout`'s; returns where to point sightx-shard."""
    images, grades, ungradable = _truth(out)
    if (out / "test").exists():
        raise SightXError(f"the {layout} layout has no unlabelled test folder: generate it without --with-test")
    written = _WRITERS[layout](out, images, grades, ungradable, seed)
    shutil.rmtree(out / "train")
    (out / "trainLabels.csv").unlink()
    return written


def _aptos(out: Path, images: list[Path], grades: dict[str, int], _: set[str], __: int) -> Written:
    for p in images:
        _put(out / "train_images" / f"{p.stem}.png", _as_png(p.read_bytes()))
    _put(out / "train.csv", "id_code,diagnosis\n" + "".join(f"{p.stem},{grades[p.stem]}\n" for p in images))
    return Written(out / "train_images", None)


def _idrid(out: Path, images: list[Path], grades: dict[str, int], _: set[str], __: int) -> Written:
    folder = out / IDRID / "1. Original Images" / "a. Training Set"
    for p in images:
        _put(folder / f"{p.stem}.jpg", p.read_bytes())
    # As the sheet is shipped: a trailing space in a header, empty columns, empty rows at the end.
    rows = "".join(f"{p.stem},{grades[p.stem]},0,,\n" for p in images) + ",,,,\n" * 3
    labels = out / IDRID / "2. Groundtruths" / "a. IDRiD_Training Labels.csv"
    _put(labels, "Image name,Retinopathy grade,Risk of macular edema ,,\n" + rows)
    return Written(folder, labels)


def _messidor2(out: Path, images: list[Path], grades: dict[str, int], ungradable: set[str], _: int) -> Written:
    rows = []
    for p in images:
        _put(out / "IMAGES" / f"{p.stem}.png", _as_png(p.read_bytes()))
        bad = p.stem in ungradable
        rows.append(f"{p.stem}.png,{'' if bad else grades[p.stem]},{'' if bad else 0},{0 if bad else 1}\n")
    _put(out / "messidor_data.csv", "image_id,adjudicated_dr_grade,adjudicated_dme,adjudicated_gradable\n" + "".join(rows))
    return Written(out / "IMAGES", None)


def _ddr(out: Path, images: list[Path], grades: dict[str, int], ungradable: set[str], seed: int) -> Written:
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(images))
    start = 0
    for i, (split, share) in enumerate(DDR_SPLITS):
        end = len(images) if i == len(DDR_SPLITS) - 1 else start + round(share * len(images))
        chosen = [images[j] for j in sorted(order[start:end])]
        for p in chosen:
            _put(out / DDR / split / f"{p.stem}.jpg", p.read_bytes())
        lines = "".join(f"{p.stem}.jpg {DDR_UNGRADABLE if p.stem in ungradable else grades[p.stem]}\n" for p in chosen)
        _put(out / DDR / f"{split}.txt", lines)
        start = end
    return Written(out / DDR / "train", out / DDR / "train.txt")


_WRITERS = {"aptos": _aptos, "idrid": _idrid, "messidor2": _messidor2, "ddr": _ddr}
