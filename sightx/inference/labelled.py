"""A grader's outputs on labelled shards (any dataset's: sightx-shard writes them all alike), for sightx-evaluate.

Samples are read as stored (already preprocessed with the shard set's options) and graded through the
one grading path (sightx.inference.grader), test-time augmentation and temperature included. Only
labelled samples count; each keeps its patient id, so intervals can resample patients.
"""

from __future__ import annotations

import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sightx.contracts import sample
from sightx.errors import SightXError
from sightx.files.names import recorded
from sightx.image import codec
from sightx.inference.grader import Grader
from sightx.labels.ids import patient_eye


class NoLabelledSamples(SightXError):
    """Shards that hold no graded sample to evaluate on."""


@dataclass
class Labelled:
    """Per sample: the head's output, the true grade, the patient, the image id; plus what was skipped."""

    outputs: np.ndarray
    grades: np.ndarray
    patients: np.ndarray
    images: list[str]
    skipped: int  # unlabelled, corrupt or of another split
    model_seconds: float  # time in the model (TTA views included)


def shard_files(paths: list[Path]) -> list[Path]:
    """The .tar shards among `paths`; folders are searched recursively, in name order."""
    found: list[Path] = []
    for p in paths:
        found += sorted(p.rglob("*.tar")) if p.is_dir() else [p]
    return list(dict.fromkeys(found))


def samples(path: Path, split: str | None) -> Iterator[tuple[bytes, int, str, str] | None]:
    """(jpeg, grade, patient, image) per labelled sample of one shard; None for one that does not count."""
    try:
        for key, parts in sample.read_samples(path):
            try:
                grade = sample.grade_of(parts)
                meta = sample.meta_of(parts)
                jpeg = sample.image_of(parts)
            except sample.SampleError:
                yield None
                continue
            if grade is None or (split is not None and meta.get("split") != split):
                yield None
                continue
            image = recorded(str(meta.get("image", key)))
            patient = meta.get("patient") or patient_eye(image)[0]
            yield jpeg, grade, str(patient), image
    except (OSError, tarfile.TarError) as e:
        raise SightXError(f"unreadable shard {path}: {e}") from None


def collect(grader: Grader, paths: list[Path], *, split: str | None = None, batch_size: int = 32, progress: bool = True) -> Labelled:
    """Grade every labelled sample of the shards under `paths` (of `split` only, when given)."""
    shards = shard_files(paths)
    if not shards:
        raise NoLabelledSamples(f"no .tar shards in {', '.join(map(str, paths))}")
    outputs: list[np.ndarray] = []
    grades: list[int] = []
    patients: list[str] = []
    images: list[str] = []
    skipped, seconds = 0, 0.0
    batch: list = []
    bar = tqdm(desc="evaluate", unit="img", disable=not progress)

    def flush() -> None:
        nonlocal seconds, skipped
        tensors, kept = [], []
        for item in batch:
            try:
                tensors.append(grader.tensor(item[0]))
                kept.append(item)
            except codec.CodecError:  # a corrupt stored image
                skipped += 1
        start = time.perf_counter()
        out = grader.outputs(tensors)
        seconds += time.perf_counter() - start
        if kept:
            outputs.append(out)
            grades.extend(k[1] for k in kept)
            patients.extend(k[2] for k in kept)
            images.extend(k[3] for k in kept)
        bar.update(len(batch))
        batch.clear()

    for shard in shards:
        for item in samples(shard, split):
            if item is None:
                skipped += 1
                continue
            batch.append(item)
            if len(batch) == batch_size:
                flush()
    flush()
    bar.close()
    if not grades:
        raise NoLabelledSamples(f"no labelled samples{f' in split {split}' if split else ''} in {len(shards)} shard(s)")
    return Labelled(np.concatenate(outputs), np.asarray(grades, np.int64), np.asarray(patients), images, skipped, seconds)
