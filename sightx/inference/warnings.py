"""Quality warnings for a graded photo, from the metrics the preprocessing records for every sample.

The limits were set on synthetic EyePACS photos (sightx/synth) preprocessed at 64 and 256 px: the
generator's ungradable dark shots measure brightness 8-18 and its under-exposed but gradable ones
23 and up; its ungradable blurred shots have sharpness 7-18 at 256 px against 49 and up for
sharp and slightly soft ones (sharpness grows as the output shrinks, so at 64 px the limit is
conservative: it flags only heavy blur). "possibly-ungradable" comes from the gradability score
(sightx/image/gradability.py; its threshold is explained in README). A warning informs; it never
withholds a grade.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sightx.image.gradability import DEFAULT_THRESHOLD, score_of

# Warning codes, with what each tells a reader.
MESSAGES = {
    "no-fov": "no circular field of view found: graded on the centre square of the frame",
    "fov-too-small": "the field of view found is implausibly small: graded on the centre square of the frame",
    "too-dark": "the field is too dark to grade reliably",
    "blurred": "the field looks out of focus",
    "field-cut-off": "much of the field of view lies outside the frame",
    "possibly-ungradable": "the gradability score is low: a grader may not be able to read this photo",
}


@dataclass(frozen=True)
class QualityLimits:
    min_brightness: float = 20.0  # mean grey level inside the field, before normalisation
    min_sharpness: float = 25.0  # variance of the Laplacian at the output size
    min_fov_fraction: float = 0.75  # share of the field circle inside the frame
    min_gradability: float = DEFAULT_THRESHOLD  # the rule-based gradability score, 0-1


def quality_warnings(info: dict[str, Any], limits: QualityLimits = QualityLimits()) -> list[str]:
    """Warning codes (keys of MESSAGES) for one preprocessed photo's `Processed.info`."""
    found = []
    if info.get("fov_fallback"):
        found.append(str(info["fov_fallback"]))
    if info.get("brightness", 255.0) < limits.min_brightness:
        found.append("too-dark")
    if info.get("sharpness", float("inf")) < limits.min_sharpness:
        found.append("blurred")
    if info.get("fov_fraction", 1.0) < limits.min_fov_fraction:
        found.append("field-cut-off")
    score = score_of(info)  # None: a shard written before the score existed, nothing to warn about
    if score is not None and score < limits.min_gradability:
        found.append("possibly-ungradable")
    return found
