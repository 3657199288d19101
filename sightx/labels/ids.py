"""Image ids and who they belong to: a file name's id, its WebDataset key, patient and eye from Kaggle names.
Pure string functions."""

from __future__ import annotations

import re
from pathlib import PurePath

_KAGGLE_NAME = re.compile(r"^(?P<patient>.+)_(?P<eye>left|right)$", re.IGNORECASE)


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
