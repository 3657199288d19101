"""Labels and identities: the Kaggle label file, patient/eye from names, the patient-level split.

Pure apart from reading the CSV: the split and ids are decided here, before any pixel is touched,
so a bad label file fails in a second rather than after hours of decoding.

pandas and numpy are imported by the functions that use them: the names, suffixes and label-file
lookup here are what sightx.sources lists archives with, and sightx-doctor lists them in an
interpreter where neither is installed yet.
"""

from __future__ import annotations

import errno
import io
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from sightx.errors import SightXError, one_line
from sightx.image.formats import IMAGE_SUFFIXES

if TYPE_CHECKING:
    import pandas as pd

LABEL_FILE = "trainLabels.csv"
LABEL_FILES = (LABEL_FILE, LABEL_FILE + ".zip")  # Kaggle ships the labels zipped
_MAX_LABEL_BYTES = 1 << 30
_KAGGLE_NAME = re.compile(r"^(?P<patient>.+)_(?P<eye>left|right)$", re.IGNORECASE)


class LabelError(SightXError, ValueError):
    """A label file we refuse to train on; the message names the offending rows."""


def find_label_file(raw: Path) -> Path | None:
    """Kaggle keeps trainLabels.csv(.zip) beside train/: look in raw/ and its parent."""
    return find_label_in([raw, raw.parent])


def find_label_in(folders: list[Path]) -> Path | None:
    """The first trainLabels.csv or trainLabels.csv.zip in `folders`, nearest first."""
    for folder in folders:
        for name in LABEL_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def label_bytes(path: Path) -> bytes:
    """A label file's bytes; a .zip gives its one .csv member (read in memory, never extracted)."""
    try:
        if path.suffix.lower() != ".zip":
            return path.read_bytes()
        with zipfile.ZipFile(path) as zf:
            members = [i for i in zf.infolist() if i.filename.lower().endswith((".csv", ".txt")) and not i.is_dir()]
            if len(members) == 1 and members[0].file_size <= _MAX_LABEL_BYTES and not members[0].flag_bits & 0x1:
                return zf.read(members[0])
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise LabelError(f"{path}: cannot read label file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    raise LabelError(
        f"{path}: expected one unencrypted .csv of at most {_MAX_LABEL_BYTES:,} bytes inside, found {len(members)} .csv file(s)"
    )


def _rows(lines: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(n) for n in lines[:limit])
    return shown + (f" and {len(lines) - limit} more" if len(lines) > limit else "")


def read_labels(path: Path) -> dict[str, int]:
    """image id -> grade from trainLabels.csv or trainLabels.csv.zip (see parse_labels)."""
    return parse_labels(label_bytes(path), str(path))


def parse_labels(data: bytes, path: str) -> dict[str, int]:
    """image id -> grade, validated: columns image,level; integer grades 0-4; unique ids. `path` names
    the file in messages (it may be inside an archive)."""
    df = read_csv(data, path)
    missing = [c for c in ("image", "level") if c not in df.columns]
    if missing:
        raise LabelError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, df.columns)) or 'none'})")
    return validate_grades(df["image"], df["level"], path)


def read_csv(data: bytes, path: str) -> pd.DataFrame:
    """All cells as strings, so ids like 007 stay as written."""
    import pandas as pd

    try:
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise LabelError(f"{path}: cannot read label file ({one_line(str(e))})") from None


def validate_grades(
    ids: pd.Series, grades: pd.Series, path: str, first_line: int = 2, classes: int = 5, what: str = "grade"
) -> dict[str, int]:
    """image id -> grade (or another class label: `classes` of them, called `what` in messages), refusing
    values outside 0..classes-1, empty ids and duplicate ids (naming the lines)."""
    line = ids.index.to_numpy() + first_line  # file line numbers from the row positions (after a header: 2)
    # Ids are file names without the extension; some label files carry it ("10_left.jpeg"): accept both.
    images = ids.str.strip().str.replace(r"\.(?:jpe?g|png|tiff?)$", "", case=False, regex=True).reset_index(drop=True)
    levels = grades.str.strip().reset_index(drop=True)
    bad = ~levels.isin([str(g) for g in range(classes)])
    if bad.any():
        examples = ", ".join(f"{i!r}={v!r}" for i, v in zip(images[bad][:3], levels[bad][:3]))
        raise LabelError(f"{path}: {what} not in 0-{classes - 1} on line(s) {_rows(line[bad].tolist())} ({examples})")
    empty = images == ""
    if empty.any():
        raise LabelError(f"{path}: empty image id on line(s) {_rows(line[empty].tolist())}")
    dup = images.duplicated(keep=False)
    if dup.any():
        first = images[dup].iloc[0]
        raise LabelError(
            f"{path}: duplicate image id(s) {', '.join(sorted(set(images[dup]))[:5])} "
            f"(e.g. {first!r} on lines {_rows(line[images == first].tolist())})"
        )
    return dict(zip(images, levels.astype(int)))


def image_id(path: PurePath) -> str:
    """The id a label file uses for an image: its file name without the extension."""
    return path.stem


def sample_key(image: str) -> str:
    """WebDataset splits keys at the first dot, so ids must not contain any."""
    return image.replace(".", "_")


def patient_eye(image: str) -> tuple[str, str | None]:
    """Kaggle names are {patient}_{left|right}; any other name is a patient of its own."""
    m = _KAGGLE_NAME.match(image)
    if m:
        return m["patient"], m["eye"].lower()
    return image, None


def find_images(raw: Path) -> list[Path]:
    """All JPEGs under raw/, recursively, case-insensitive suffix, in a stable order (regular files only)."""
    return find_inputs(raw)[0]


def find_inputs(raw: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Everything under raw/ named like a JPEG: the regular files (or symlinks to them), and the rest
    (dangling symlinks, loops, FIFOs, folders) with what each is, so none of them vanishes unaccounted."""
    images, others = [], []
    for p in sorted(raw.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            what = not_a_file(p)
            if what is None:
                images.append(p)
            else:
                others.append((p, what))
    return images, others


def not_a_file(path: Path) -> str | None:
    """What `path` is when it is not a readable regular file (reading a FIFO would block forever), else None."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symlink loop"
        return "a dangling symlink" if path.is_symlink() else (e.strerror or str(e))
    if stat.S_ISREG(mode):
        return None
    return "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"


@dataclass(frozen=True)
class Split:
    train: frozenset[str]
    val: frozenset[str]


def split_patients(patient_grades: dict[str, int], val_fraction: float, seed: int) -> Split:
    """Patient-level, grade-stratified split: both eyes always on the same side.

    Patients are ordered by grade (their worse eye), shuffled within each grade, and every
    1/val_fraction-th is taken (systematic sampling): the val share is exact overall and
    proportional within every grade, even the rare ones.
    """
    import numpy as np

    rng = np.random.default_rng([seed, 0x5EED])
    patients = sorted(patient_grades)
    tiebreak = rng.permutation(len(patients))
    order = sorted(range(len(patients)), key=lambda i: (patient_grades[patients[i]], tiebreak[i]))
    offset = rng.random()
    val = {
        patients[i] for rank, i in enumerate(order) if np.floor((rank + 1) * val_fraction + offset) > np.floor(rank * val_fraction + offset)
    }
    return Split(train=frozenset(patients) - frozenset(val), val=frozenset(val))
