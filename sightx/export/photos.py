"""The photos an export is checked and calibrated on: the user's (a folder of photos, or the samples of a shard
set, already preprocessed and graded) or synthetic EyePACS-like ones, each through the grading path (the
checkpoint's preprocessing, the evaluation transform) as a served photo is."""

from __future__ import annotations

from pathlib import Path

import torch

from sightx.errors import Rejection, SightXError
from sightx.image import codec
from sightx.inference.grader import Grader
from sightx.inference.labelled import samples, shard_files
from sightx.inference.transforms import normalize_batch
from sightx.sources.folder import find_images
from sightx.synth.render import ImageSpec, render

SYNTH_SIZE = (1024, 683)  # big enough for the field finder, small enough to render quickly


class ExportError(SightXError):
    """An export that cannot be made or does not match PyTorch; one line."""


def photo_bytes(folder: Path | None, n: int, seed: int = 0) -> list[bytes]:
    """Up to n photos from `folder` (sorted, recursively), or n synthetic ones of every grade."""
    if folder is not None:
        paths = find_images(folder)[:n]
        if not paths:
            raise ExportError(f"--photos {folder}: no photos found")
        return [p.read_bytes() for p in paths]
    return [
        render(ImageSpec(seed=(seed, i), grade=i % 5, right_eye=bool(i % 2), size=SYNTH_SIZE, quality=90, ungradable_rate=0)).jpeg
        for i in range(n)
    ]


def model_inputs(grader: Grader, photos: list[bytes]) -> list[torch.Tensor]:
    """Each readable photo as the model sees it: (1, 3, S, S) float32, normalised; unreadable ones are skipped."""
    out = []
    for data in photos:
        try:
            tensor = grader.tensor(grader.prepare(data).jpeg)
        except Rejection:
            continue
        out.append(normalize_batch(tensor[None], torch.device("cpu"), channels_last=False, norm=grader.checkpoint.normalization))
    return out


def shard_inputs(grader: Grader, shards: Path, split: str, n: int) -> tuple[list[torch.Tensor], list[int]]:
    """Up to n labelled samples of `split` in the shard set under `shards`, as the model sees them, with their
    grades: stored samples are already preprocessed with the set's options, so only the input transform runs."""
    paths = shard_files([shards])
    if not paths:
        raise ExportError(f"--shards {shards}: no .tar shards found")
    inputs: list[torch.Tensor] = []
    grades: list[int] = []
    for path in paths:
        for item in samples(path, split):
            if len(inputs) == n:
                return inputs, grades
            if item is None:
                continue
            try:
                tensor = grader.tensor(item[0])
            except codec.CodecError:  # a corrupt stored image: not a photo to calibrate or check on
                continue
            inputs.append(normalize_batch(tensor[None], torch.device("cpu"), channels_last=False, norm=grader.checkpoint.normalization))
            grades.append(item[1])
    return inputs, grades


def generated_inputs(image_size: int, seed: int = 0) -> list[torch.Tensor]:
    """Normalised-looking random batches of 1 and 3 (the batch dimension must stay dynamic)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 3, image_size, image_size, generator=g) for n in (1, 3)]
