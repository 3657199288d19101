"""Warnings for a graded photo, from the gradability score the preprocessing records.

A photo whose score is under the threshold gets "possibly-ungradable" and one code for the score's
main reason (too-dark, blurred, hazy, ...), so the warning says why; a photo above it gets none of
them, however it measures on any single component (the score was fitted on real photos; single
measures with fixed limits were not: sightx/image/gradability.py). Photos from shards written before
the score existed fall back to the fixed limits below. A warning informs; it never withholds a grade.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sightx.image import gradability_features
from sightx.image.gradability import DEFAULT_THRESHOLD, GATE_REASONS, score_of

# Warning codes, with what each tells a reader.
MESSAGES = {
    "no-fov": "no circular field of view found: graded on the centre square of the frame",
    "fov-too-small": "the field of view found is implausibly small: graded on the centre square of the frame",
    "possibly-ungradable": "the gradability score is low: a grader may not be able to read this photo",
    "too-dark": "the field is too dark to grade reliably",
    "over-exposed": "the field is washed out",
    "poor-exposure": "parts of the field are too dark or over-exposed",
    "uneven-illumination": "uneven illumination: part of the field is lost",
    "blurred": "the field looks out of focus: vessels are not sharp",
    "hazy": "low contrast: haze or media opacity",
    "field-cut-off": "much of the field of view lies outside the frame",
}
# The score's reason (its text in the record) -> the warning code that names it.
REASON_CODES = {
    GATE_REASONS["dark"]: "too-dark",
    GATE_REASONS["washed"]: "over-exposed",
    GATE_REASONS["cut"]: "field-cut-off",
    GATE_REASONS["vessels"]: "blurred",
    gradability_features.REASONS["exposure"]: "poor-exposure",
    gradability_features.REASONS["illumination"]: "uneven-illumination",
    gradability_features.REASONS["blur"]: "blurred",
    gradability_features.REASONS["haze"]: "hazy",
}


@dataclass(frozen=True)
class WarningLimits:
    min_gradability: float = DEFAULT_THRESHOLD  # the gradability score, 0-1
    # For samples written before the score: fixed limits on single measures.
    min_brightness: float = 20.0  # mean grey level inside the field, before normalisation
    min_sharpness: float = 25.0  # variance of the Laplacian at the output size
    min_fov_fraction: float = 0.75  # share of the field circle inside the frame


def photo_warnings(info: dict[str, Any], limits: WarningLimits = WarningLimits()) -> list[str]:
    """Warning codes (keys of MESSAGES) for one preprocessed photo's `Processed.info`."""
    found = []
    if info.get("fov_fallback"):
        found.append(str(info["fov_fallback"]))
    score = score_of(info)
    if score is None:  # a shard written before the score existed
        if info.get("brightness", 255.0) < limits.min_brightness:
            found.append("too-dark")
        if info.get("sharpness", float("inf")) < limits.min_sharpness:
            found.append("blurred")
        if info.get("fov_fraction", 1.0) < limits.min_fov_fraction:
            found.append("field-cut-off")
        return found
    if score < limits.min_gradability:
        found.append("possibly-ungradable")
        code = REASON_CODES.get(str(info["gradability"].get("reason")))
        if code is not None:
            found.append(code)
    return found
