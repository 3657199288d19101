"""Label files of the public DR sets as each is distributed, read into one shape.

All of them grade on the international clinical DR scale (0 none .. 4 proliferative), so the
grades carry over as they are; what differs is the file: Kaggle EyePACS `image,level`; APTOS 2019
`id_code,diagnosis`; IDRiD `Image name,Retinopathy grade` (stray spaces in the header);
Messidor-2 `image_id,adjudicated_dr_grade,...,adjudicated_gradable` (ids with their extension);
DDR `train.txt` lines `<file> <grade>` where 5 means ungradable. Images graded ungradable are
kept apart (the shard plan records them as `ungradable-label` rejections, never trains on them).

EyeQ (Fu et al. 2019, a re-labelling of 28,792 EyePACS photos) is the one set labelled for image
quality instead: `image,quality` with 0 Good, 1 Usable, 2 Reject (its `Label_EyeQ_train.csv` starts
with an unnamed index column and carries a `DR_grade` column, both ignored). Its labels are of kind
`quality` (sightx.labels.kinds): they train the gradability model, never a DR grader.

pandas is imported where a file is parsed: `detect` runs in sightx-doctor before it is installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sightx.image.formats import is_image_name
from sightx.labels.files import LabelError, label_bytes, read_csv, validate_grades
from sightx.labels.kinds import GRADE, QUALITY, QUALITY_NAMES

FORMATS = ("eyepacs", "aptos", "idrid", "messidor2", "ddr", "eyeq")
_COLUMNS = {
    "eyepacs": ("image", "level"),
    "aptos": ("id_code", "diagnosis"),
    "idrid": ("image name", "retinopathy grade"),
    "messidor2": ("image_id", "adjudicated_dr_grade"),
    "eyeq": ("image", "quality"),
}
_DDR_LINE = re.compile(r"^\S+\.(jpe?g|png|tiff?)\s+\d+\s*$", re.IGNORECASE)
DDR_UNGRADABLE = "5"


@dataclass(frozen=True)
class LabelSet:
    """image id -> class (a grade 0-4, or for `kind` quality EyeQ's 0-2), the ids graded ungradable,
    and the format they were read from."""

    grades: dict[str, int]
    ungradable: frozenset[str]
    format: str
    kind: str = GRADE


def detect(head: bytes) -> str | None:
    """The format of a label file from its first line, or None when it is none of them."""
    first = head.decode("utf-8", "replace").lstrip("\ufeff").splitlines()[0] if head.strip() else ""
    header = {c.strip().lower() for c in first.split(",")}
    for name, columns in _COLUMNS.items():
        if set(columns) <= header:
            return name
    return "ddr" if _DDR_LINE.match(first) else None


def read_label_set(data: bytes, origin: str, fmt: str = "auto") -> LabelSet:
    """The labels in `data` (from `origin`, named in messages), in `fmt` or the detected format."""
    import pandas as pd

    name = detect(data[:65536]) if fmt == "auto" else fmt
    if name is None:
        known = "; ".join(f"{k}: {','.join(v)}" for k, v in _COLUMNS.items())
        raise LabelError(f"{origin}: not a known label format ({known}; ddr: '<file> <grade>' lines); pass --label-format")
    if name == "eyepacs":
        return LabelSet(parse_labels(data, origin), frozenset(), name)
    if name == "ddr":
        return _ddr(data, origin)
    df = read_csv(data, origin)
    df.columns = [str(c).strip().lower() for c in df.columns]
    id_col, grade_col = _COLUMNS[name]
    missing = [c for c in (id_col, grade_col) if c not in df.columns]
    if missing:
        raise LabelError(f"{origin}: missing column(s) {', '.join(missing)} for the {name} format")
    df = df[(df != "").any(axis=1)]  # IDRiD sheets end in rows of empty cells
    ids = df[id_col].map(lambda s: _stem(s.strip()))
    ungradable = pd.Series(False, index=df.index)
    if name == "messidor2" and "adjudicated_gradable" in df.columns:
        ungradable = df["adjudicated_gradable"].str.strip() == "0"
    if name == "eyeq":  # every photo is labelled, Reject included: that is what the model learns
        quality = validate_grades(ids, df[grade_col], origin, classes=len(QUALITY_NAMES), what="quality")
        return LabelSet(quality, frozenset(), name, QUALITY)
    grades = validate_grades(ids[~ungradable], df.loc[~ungradable, grade_col], origin)
    return LabelSet(grades, frozenset(ids[ungradable]), name)


def _ddr(data: bytes, origin: str) -> LabelSet:
    import pandas as pd

    rows = [line.split() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    bad = [i + 1 for i, r in enumerate(rows) if len(r) != 2]
    if bad:
        raise LabelError(f"{origin}: expected '<file> <grade>' on line(s) {', '.join(map(str, bad[:8]))}")
    ids = pd.Series([_stem(f) for f, _ in rows])
    grades = pd.Series([g for _, g in rows])
    ungradable = grades == DDR_UNGRADABLE
    return LabelSet(validate_grades(ids[~ungradable], grades[~ungradable], origin, first_line=1), frozenset(ids[ungradable]), "ddr")


def _stem(name: str) -> str:
    """Messidor-2 and DDR name files with their extension; the image id is the name without it."""
    return PurePosixPath(name).stem if is_image_name(name) else name


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
