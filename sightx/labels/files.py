"""The label file: where Kaggle's layout keeps it, its bytes (a .zip read in memory), and the CSV parse and
class validation every label format shares.

pandas is imported by the functions that use it: sightx-doctor finds label files in an interpreter
where it is not installed yet.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from sightx.errors import SightXError, one_line

if TYPE_CHECKING:
    import pandas as pd

LABEL_FILE = "trainLabels.csv"

LABEL_FILES = (LABEL_FILE, LABEL_FILE + ".zip")  # Kaggle ships the labels zipped

_MAX_LABEL_BYTES = 1 << 30


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
