"""The one grading path: photo bytes -> the checkpoint's preprocessing -> model -> head output.

sightx-predict (CSV) and sightx-serve (page, REST) both grade through here. A photo goes through
`preprocess_decoded` with the options stored in the checkpoint (the function and options
sightx-shard used), is JPEG-encoded and decoded exactly as a shard stores it, then sees the
validation transform: no train/serve skew. Every readable photo gets a grade; what might make it
unreliable (no field found, too dark, blurred, cut off) comes back as warnings beside it.

Nothing here imports the training loop or plotting: a grader loads torch, the model and the codecs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sightx.contracts import checkpoint as ckpt
from sightx.contracts import sample
from sightx.image.photos import decode_photo
from sightx.image.preprocess import PreprocessOptions, preprocess_decoded
from sightx.inference import tta
from sightx.inference.runtimes import open_model
from sightx.inference.transforms import EvalTransform, normalize_batch
from sightx.inference.warnings import photo_warnings
from sightx.labels.grades import NAMES, REFERABLE
from sightx.models import heads


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


@dataclass(frozen=True)
class Photo:
    """A photo preprocessed as its checkpoint's shards were; plain data, so a process pool can return it."""

    jpeg: bytes  # the field exactly as a shard stores it: what the model sees, before the input resize
    measures: dict[str, Any]  # Processed.info: size, circle, brightness, contrast, sharpness, fov_fraction, gradability
    warnings: tuple[str, ...] = ()
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)


def preprocess_photo(data: bytes, opts: PreprocessOptions, max_pixels: int | None = None) -> Photo:
    """Any readable photo -> Photo; a Rejection (not-image, truncated, too-large, ...) otherwise.
    `max_pixels` lowers the checkpoint's pixel limit (a server's: sightx.image.limits.SERVE_MAX_PIXELS)."""
    start = time.perf_counter()
    decoded = decode_photo(data, opts, max_pixels)
    decoded_at = time.perf_counter()
    processed = preprocess_decoded(decoded, opts, centre_fallback=True)
    timings = {"decode": round((decoded_at - start) * 1000, 2), "preprocess": _ms(decoded_at)}
    return Photo(processed.jpeg, processed.info, tuple(photo_warnings(processed.info)), timings)


@dataclass(frozen=True)
class Graded:
    """One photo's grade and everything that goes with it."""

    grade: int
    output: np.ndarray  # the head's per-image output: (5,) probabilities or a () score
    referable: bool  # predicted grade >= REFERABLE, the decision the validation metrics score
    referable_score: float  # P(grade >= 2) for a classifier, the score itself for a regression head
    photo: Photo
    model_ms: float = 0.0

    @property
    def name(self) -> str:
        return NAMES[self.grade]


class Grader:
    """A checkpoint ready to grade, with the preprocessing it was trained on (of `task` grade; the
    gradability model (sightx.inference.gradability_model) runs a quality checkpoint through this class too).

    `prepare` and `tensor` are CPU work, safe to run in many threads at once; `outputs` runs the
    model and belongs on one thread per model instance.
    """

    def __init__(
        self,
        checkpoint: Path | str,
        device: str = "auto",
        task: str = "grade",
        runtime: str = "auto",
        fast: bool = True,
        tta_mode: str = "none",
    ) -> None:
        state, self.runtime = open_model(checkpoint, device, runtime, fast)
        if state.task != task:
            use = "--gradability-model" if state.task == "gradability" else "--checkpoint"
            raise ckpt.CheckpointError(
                f"{checkpoint} is a {state.task} model (sightx-train --task {state.task}), not a {task} one: pass it as {use}"
            )
        self.head = heads.get(state.head)
        self.preprocess = PreprocessOptions.from_dict(state.preprocess)
        self.device = self.runtime.device
        self.checkpoint = state  # the facts, without a second copy of the weights
        self.transform = EvalTransform(state.image_size)
        tta.views(tta_mode)  # refuses an unknown mode here, not at the first photo
        self.tta = tta_mode
        # Temperature scaling (sightx-evaluate --fit-temperature): a classifier's logits are divided by it.
        self.temperature = state.temperature if self.head.width > 1 else None

    @property
    def model(self) -> torch.nn.Module | None:
        """The PyTorch module (Grad-CAM needs it); None when ONNX Runtime or OpenVINO runs the model."""
        return self.runtime.module

    @property
    def sha256(self) -> str:
        return self.checkpoint.sha256

    @property
    def thresholds(self) -> list[float]:
        return list(self.checkpoint.thresholds)

    @property
    def majority_grade(self) -> int:
        """The most common grade of the checkpoint's validation set (0 when it has none recorded)."""
        baseline = (self.checkpoint.val or {}).get("baseline") or {}
        grade = baseline.get("grade", 0)
        return grade if isinstance(grade, int) and 0 <= grade < len(NAMES) else 0

    def prepare(self, data: bytes, max_pixels: int | None = None) -> Photo:
        return preprocess_photo(data, self.preprocess, max_pixels)

    def tensor(self, jpeg: bytes) -> torch.Tensor:
        """A stored field as the model sees it at validation; CodecError if it is not a JPEG or too large."""
        return self.transform(sample.decode_sample(jpeg))

    @torch.inference_mode()
    def outputs(self, tensors: list[torch.Tensor]) -> np.ndarray:
        """The head's outputs for tensors from `tensor`: (N, 5) probabilities or (N,) scores."""
        if not tensors:
            return self.head.empty()
        x = normalize_batch(torch.stack(tensors), self.device, channels_last=False, norm=self.checkpoint.normalization)
        return tta.averaged(self._activated, x, self.tta).cpu().numpy()

    def _activated(self, x: torch.Tensor) -> torch.Tensor:
        out = self.runtime(x)
        if self.temperature is not None:
            out = out.float() / self.temperature
        return self.head.activate(out)

    def judge(self, outputs: np.ndarray, photos: list[Photo], model_ms: float = 0.0) -> list[Graded]:
        """Outputs (possibly blended across eyes) -> grades and the referable call."""
        if not photos:
            return []
        grades = self.head.grades(outputs, self.thresholds)
        scores = self.head.referable_score(outputs)
        return [
            Graded(int(g), np.asarray(o), bool(g >= REFERABLE), float(s), p, model_ms)
            for g, o, s, p in zip(grades, outputs, scores, photos)
        ]

    def grade(self, photos: list[Photo]) -> list[Graded]:
        """Preprocessed photos -> graded, in one model batch."""
        tensors = [self.tensor(p.jpeg) for p in photos]
        start = time.perf_counter()
        outputs = self.outputs(tensors)
        return self.judge(outputs, photos, _ms(start))

    def grade_bytes(self, data: bytes) -> Graded:
        """One photo, start to end: what a script grading a file needs."""
        return self.grade([self.prepare(data)])[0]
