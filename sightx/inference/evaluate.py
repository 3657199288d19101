"""sightx-evaluate: a checkpoint on any labelled shards, with intervals, calibration and a report.

The grading path is the one predict and serve use (sightx.inference.grader), with optional test-time
augmentation. `--fit-temperature` fits temperature scaling on these shards (they must then be a
validation set, not the test set the numbers are quoted for) and writes a copy of the checkpoint
carrying it; predict and serve apply a checkpoint's temperature whenever it has one. `--fuse-eyes`
adds the metrics per patient, each patient graded by the worse eye (sightx.evaluation.fusion says why),
under "patient_level" beside the per-photo ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sightx.contracts import checkpoint as ckpt
from sightx.errors import SightXError
from sightx.evaluation import clinical, fusion
from sightx.evaluation.assess import assess
from sightx.evaluation.report import write_report
from sightx.inference.grader import Grader
from sightx.inference.labelled import collect


class EvaluateError(SightXError):
    """An evaluation that cannot be done as asked; one line."""


@dataclass(frozen=True)
class EvaluateOptions:
    out: Path = Path("evaluation")
    split: str | None = None  # only samples of this split (train, val, test); None: every labelled sample
    tta: str = "none"
    fit_temperature: Path | None = None  # write the checkpoint, with the fitted temperature, here
    bootstrap: int = 1000
    seed: int = 0
    fuse_eyes: bool = False  # also assess per patient, by the worse eye (sightx.evaluation.fusion)
    batch_size: int = 32
    device: str = "auto"
    runtime: str = "auto"  # what runs the model (sightx.inference.runtimes): an exported .onnx is evaluated as served
    progress: bool = True


def _fit(grader: Grader, checkpoint: Path, outputs: np.ndarray, grades: np.ndarray, dest: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit T on these outputs (already at the checkpoint's own temperature), save the copy, return rescaled outputs."""
    if grader.head.width == 1:
        raise EvaluateError(f"{checkpoint} has a {grader.head.name} head: temperature scaling needs class probabilities")
    if dest.resolve() == checkpoint.resolve():
        raise EvaluateError("--fit-temperature writes a copy: give a path other than the checkpoint's")
    t = clinical.fit_temperature(outputs, grades)
    total = t * (grader.temperature or 1.0)
    state = ckpt.load(checkpoint)
    ckpt.save(dest, dataclasses.replace(state, temperature=round(total, 6)))
    scaled = clinical.scale_probabilities(outputs, t)
    record = {
        "value": round(total, 6),
        "source": f"fitted on these shards, written to {dest}",
        "ece_before": round(clinical.expected_calibration_error(outputs, grades), 4),
        "nll_before": round(clinical.nll(outputs, grades), 4),
    }
    return scaled, record


def assess_patients(
    grades: np.ndarray,
    predicted: np.ndarray,
    score: np.ndarray,
    patients: np.ndarray,
    probabilities: np.ndarray | None,
    opts: EvaluateOptions,
) -> dict[str, Any]:
    """`assess` of the patients, each by the worse eye (sightx.evaluation.fusion.fuse_eyes)."""
    fused = fusion.fuse_eyes(patients, grades, predicted, score, probabilities)
    result = assess(
        fused.grades, fused.predicted, fused.referable_score, fused.ids, fused.probabilities, n_boot=opts.bootstrap, seed=opts.seed
    )
    result["level"] = "patient"
    result["fusion"] = {
        "rule": "worse eye: max of the eyes' true grades, predicted grades and referable scores; "
        "grade probabilities of the worse eye with the eyes independent",
        "photos_per_patient": {str(k): int(v) for k, v in zip(*np.unique(fused.photos, return_counts=True), strict=True)},
    }
    return result


def evaluate_checkpoint(checkpoint: Path, shards: list[Path], opts: EvaluateOptions) -> dict[str, Any]:
    """Grade, assess, write OUT/report.html and OUT/metrics.json; returns the assessment."""
    if opts.fit_temperature is not None and checkpoint.suffix != ".pt":
        raise EvaluateError(f"--fit-temperature writes a copy of a .pt checkpoint: evaluate the .pt {checkpoint} was made from")
    grader = Grader(checkpoint, opts.device, tta_mode=opts.tta, runtime=opts.runtime)
    data = collect(grader, shards, split=opts.split, batch_size=opts.batch_size, progress=opts.progress)
    outputs, temperature = data.outputs, None
    if opts.fit_temperature is not None:
        outputs, temperature = _fit(grader, checkpoint, outputs, data.grades, opts.fit_temperature)
    elif grader.temperature is not None:
        temperature = {"value": grader.temperature, "source": "stored in the checkpoint"}
    head = grader.head
    predicted, score = head.grades(outputs, grader.thresholds), head.referable_score(outputs)
    probabilities = outputs if head.width > 1 else None
    result = assess(data.grades, predicted, score, data.patients, probabilities, n_boot=opts.bootstrap, seed=opts.seed)
    result["level"] = "photo"
    if opts.fuse_eyes:
        result["patient_level"] = assess_patients(data.grades, predicted, score, data.patients, probabilities, opts)
    if temperature is not None:
        result["temperature"] = temperature
    result["source"] = {
        "checkpoint": str(checkpoint),
        "sha256": grader.sha256,
        "arch": grader.checkpoint.arch,
        "head": head.name,
        "shards": [str(s) for s in shards],
        "split": opts.split or "all",
        "skipped_samples": data.skipped,
        "tta": opts.tta,
        "model_ms_per_photo": round(1000 * data.model_seconds / len(data.grades), 3),
    }
    write_report(result, opts.out, f"SightX evaluation: {checkpoint.name} on {len(data.grades)} photos")
    return result
