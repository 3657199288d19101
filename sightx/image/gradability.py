"""Could a grader read this photo? A gradability score in [0, 1], fitted on real photos.

Pure maths on the field as preprocessing crops it (RGB uint8, before normalisation), at a fixed
analysis size so the score means the same whatever `--size` the shards are made at.

The score is P(gradable) from a logistic regression over the measures in
`gradability_features` (fitted on real EyePACS photos graded for gradability, cross-validated by
patient: tools/fit_gradability.py writes `gradability_fit.py`; docs/gradability.md says how and
what it reached), times a gate for what no fitting set holds enough of to learn: no field found,
a black or washed-out field, a field mostly outside the frame, no vessel tree at all. A fitted model
is not bound to fall with every step of a blur or a darkening far outside its photos; the gate is. The record keeps:

- `components`: six readable measures in [0, 1], each between a fatal level (0) and a
  good-enough one (1), RANGES below: vessels (vessel-tree contrast in green), sharpness (fine
  detail), exposure, uniformity (sectors neither dark nor washed out), field (share inside the
  frame), glare. They explain a photo; the fitted model decides its score.
- `reason`: for a score under the threshold, why in words: the gate that closed, or the group of
  measures that pulled the fitted score down most (gradability_features.REASONS).
- `source`: "fitted" (records written before say "rules"; their scores still read).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from sightx.image import gradability_features
from sightx.image.fov import Circle
from sightx.image.fundus import field_mask
from sightx.image.gradability_fit import FIT

ANALYSIS_SIZE = 256  # px across the field's square; vessels ~2-5 px wide here, blur of 1% of r ~1.3 px
SOURCE = "fitted"
# Below this score a photo gets the "possibly-ungradable" warning: chosen by the fit for at most 10%
# of gradable photos warned under cross-validation (docs/gradability.md).
DEFAULT_THRESHOLD: float = FIT["threshold"]
# The gate: (level at which it closes to 0, level at which it is fully open), far outside what the
# fitting photos hold, so the fitted model never has to extrapolate to them.
GATE_BRIGHTNESS = (4.0, 10.0)  # mean luma of the visible field (the darkest real photos with a visible field: 5-15)
GATE_WASHED = (245.0, 230.0)  # mean luma again: a white-out
GATE_FIELD = (0.5, 0.75)  # share of the field circle inside the frame
GATE_VESSELS = (0.001, 0.003)  # the vessels measure (RANGES): no vessel tree at all (real gradable photos: 0.004 and up)
GATE_REASONS = {
    "field": "no field of view found",
    "dark": "too dark",
    "washed": "washed out",
    "cut": "field mostly outside the frame",
    "vessels": "vessels not visible: blur",
}

# Component: (measure at which it is 0, measure at which it is 1). Reversed pairs fall as the measure rises.
RANGES: dict[str, tuple[float, float]] = {
    "vessels": (0.012, 0.025),  # mean black-top-hat / local brightness inside 0.9 r
    "sharpness": (0.015, 0.03),  # mean |Laplacian| of green / local brightness inside 0.9 r
    "exposure": (12.0, 40.0),  # mean luma of the visible field (and above 235 it falls again, EXPOSURE_HIGH)
    "uniformity": (0.4, 0.9),  # share of the field's sectors neither dark nor washed out
    "field": (0.55, 0.85),  # visible share of the field circle
    "glare": (0.15, 0.02),  # share of pixels with green >= 250
}
EXPOSURE_HIGH = (235.0, 200.0)  # washed out: 0 at a mean luma of 235, 1 at 200
_DARK, _WASHED = 20.0, 235.0  # sector mean luma limits
_GRID = 8
_DISC = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))  # wider than the vessels at 256 px
_BRIGHTNESS_FLOOR = 40  # green grey levels: contrast is measured against at least this, so noise in a dim field does not pass for vessels


def _ramp(value: float, zero: float, one: float) -> float:
    return float(min(1.0, max(0.0, (value - zero) / (one - zero))))


def fitted(values: dict[str, float]) -> tuple[float, dict[str, float]]:
    """P(gradable) from the fitted model, and each feature group's pull towards ungradable (logit units)."""
    pull: dict[str, float] = {}
    logit = float(FIT["intercept"])
    for name, mean, scale, coef in zip(FIT["features"], FIT["mean"], FIT["scale"], FIT["coef"]):
        x = float(values[name])
        x = math.copysign(math.log1p(abs(x) * 10.0), x) if math.isfinite(x) else mean
        term = coef * (x - mean) / scale
        logit += term
        group = gradability_features.GROUPS[name]
        pull[group] = pull.get(group, 0.0) + term
    return 1.0 / (1.0 + math.exp(min(50.0, logit))), pull  # the model's logit is for "ungradable"


def gate(measured: dict[str, float], fov_fraction: float, found: bool) -> tuple[float, str]:
    """The gate in [0, 1] from `measures` and, when it is not fully open, which part closed it."""
    if not found:
        return 0.0, "field"
    parts = {
        "dark": _ramp(measured["brightness"], *GATE_BRIGHTNESS),
        "washed": _ramp(measured["brightness"], *GATE_WASHED),
        "cut": _ramp(fov_fraction, *GATE_FIELD),
        "vessels": _ramp(measured["vessels"], *GATE_VESSELS),
    }
    worst = min(parts, key=lambda k: parts[k])
    return parts[worst], worst if parts[worst] < 1 else ""


def measures(img: np.ndarray, c: Circle, frame: tuple[float, float, float, float]) -> dict[str, float]:
    """The raw measures (see RANGES) of a field at ANALYSIS_SIZE; `frame` is the photo's box in its pixels."""
    h, w = img.shape[:2]
    x0, y0 = max(0, math.ceil(frame[0])), max(0, math.ceil(frame[1]))
    x1, y1 = min(w, math.floor(frame[2])), min(h, math.floor(frame[3]))
    vis_u8 = _in_frame(field_mask(h, w, c, 1.0), (x0, y0, x1, y1))
    # Off the rim and the padding edge of a cut-off field, by more than the filters' reach.
    m = 6
    inner_box = (x0 + m if x0 > 0 else 0, y0 + m if y0 > 0 else 0, x1 - m if x1 < w else w, y1 - m if y1 < h else h)
    inner_u8 = _in_frame(field_mask(h, w, c, 0.9), inner_box)

    green = cv2.GaussianBlur(np.ascontiguousarray(img[..., 1]), (3, 3), 0)  # sensor and JPEG noise out, vessels kept
    luma = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    local = np.maximum(cv2.blur(green, (15, 15)), np.uint8(_BRIGHTNESS_FLOOR))
    tophat = cv2.morphologyEx(green, cv2.MORPH_BLACKHAT, _DISC)
    detail = cv2.convertScaleAbs(cv2.Laplacian(green, cv2.CV_16S))  # |Laplacian|, saturating at 255 (never reached by anatomy)
    n_inner = cv2.countNonZero(inner_u8)
    vessels = cv2.mean(cv2.divide(tophat, local, dtype=cv2.CV_32F), mask=inner_u8)[0] if n_inner else 0.0
    sharp = cv2.mean(cv2.divide(detail, local, dtype=cv2.CV_32F), mask=inner_u8)[0] if n_inner else 0.0

    n_vis = cv2.countNonZero(vis_u8)
    brightness = cv2.mean(luma, mask=vis_u8)[0] if n_vis else 0.0
    glare = cv2.countNonZero(cv2.bitwise_and(cv2.inRange(img[..., 1], 250, 255), vis_u8)) / n_vis if n_vis else 0.0
    # Sector means over the visible field only: sum of luma and of the mask, area-averaged to the grid.
    weight = cv2.resize(vis_u8.astype(np.float32), (_GRID, _GRID), interpolation=cv2.INTER_AREA)
    total = cv2.resize(cv2.bitwise_and(luma, luma, mask=vis_u8).astype(np.float32), (_GRID, _GRID), interpolation=cv2.INTER_AREA)
    sectors = weight > 0.5  # sectors mostly inside the visible field
    means = total[sectors] / weight[sectors]
    good = float(np.mean((means >= _DARK) & (means <= _WASHED))) if means.size else 0.0
    return {"vessels": vessels, "sharpness": sharp, "brightness": brightness, "uniformity": good, "glare": glare}


def _in_frame(mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A (cached, read-only) mask cleared outside box (x0, y0, x1, y1); a copy only when it cuts."""
    h, w = mask.shape
    x0, y0, x1, y1 = box
    if x0 <= 0 and y0 <= 0 and x1 >= w and y1 >= h:
        return mask
    out = np.zeros_like(mask)
    out[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)]
    return out


def assess(img: np.ndarray, c: Circle, frame: tuple[float, float, float, float], fov_fraction: float, found: bool = True) -> dict[str, Any]:
    """The sample's gradability record: score, components, reason, source. `found` False: no field was
    found (the centre square stands in), which no grader would call a readable photo."""
    m = measures(img, c, frame)
    components = {
        "vessels": _ramp(m["vessels"], *RANGES["vessels"]),
        "sharpness": _ramp(m["sharpness"], *RANGES["sharpness"]),
        "exposure": min(_ramp(m["brightness"], *RANGES["exposure"]), _ramp(m["brightness"], *EXPOSURE_HIGH)),
        "uniformity": _ramp(m["uniformity"], *RANGES["uniformity"]),
        "field": _ramp(fov_fraction, *RANGES["field"]) if found else 0.0,
        "glare": _ramp(m["glare"], *RANGES["glare"]),
    }
    p, pull = fitted(gradability_features.features(img, c, frame))
    open_, closed = gate(m, fov_fraction, found)
    score = round(p * open_, 3)
    reason = None
    if score < DEFAULT_THRESHOLD:
        reason = GATE_REASONS[closed] if closed else gradability_features.REASONS[max(pull, key=lambda g: pull[g])]
    return {
        "score": score,
        "components": {k: round(v, 3) for k, v in components.items()},
        "reason": reason,
        "source": SOURCE,
    }


def score_of(info: dict[str, Any]) -> float | None:
    """The score recorded in a sample's JSON or a photo's info; None for shards written before it existed."""
    record = info.get("gradability")
    if not isinstance(record, dict):
        return None
    value = record.get("score")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
