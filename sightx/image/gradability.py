"""Could a grader read this photo? A rule-based gradability score in [0, 1] from image evidence.

Pure maths on the field as preprocessing crops it (RGB uint8, before normalisation), at a fixed
analysis size so the score means the same whatever `--size` the shards are made at. Each
component measures one thing that makes a photo unreadable and is mapped linearly to [0, 1]
between a fatal level (0) and a good-enough level (1), the RANGES below:

- vessels: contrast of the vessel tree in the green channel (black-top-hat / local brightness):
  blur, haze and under-exposure all wash it out, and without vessels nothing finer is visible.
- sharpness: fine detail (mean |Laplacian| of green / local brightness) inside 0.9 r.
- exposure: mean brightness of the visible field.
- uniformity: share of the field in 8x8 grid sectors that are neither dark nor washed out.
- field: share of the field circle inside the photo (0 when no field was found).
- glare: share of saturated pixels (reflections, an eyelash flare).

The score is sqrt(worst component x geometric mean of all): one fatal defect brings it to 0,
several mild ones add up. The record says its `source` ("rules") so a learned score can be stored
beside it later.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from sightx.image.fov import Circle
from sightx.image.fundus import field_mask

ANALYSIS_SIZE = 256  # px across the field's square; vessels ~2-5 px wide here, blur of 1% of r ~1.3 px
SOURCE = "rules"
# Below this score a photo gets the "possibly-ungradable" warning (README: how it was chosen).
DEFAULT_THRESHOLD = 0.5

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


def combine(components: dict[str, float]) -> float:
    """sqrt(min x geometric mean): any component at 0 makes the score 0; monotonic in each one."""
    values = list(components.values())
    worst = min(values)
    if worst <= 0:
        return 0.0
    geo = math.exp(sum(math.log(v) for v in values) / len(values))
    return math.sqrt(worst * geo)


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
    """The sample's gradability record: score, components, source. `found` False: no field was found
    (the centre square stands in), which no grader would call a readable photo."""
    m = measures(img, c, frame)
    components = {
        "vessels": _ramp(m["vessels"], *RANGES["vessels"]),
        "sharpness": _ramp(m["sharpness"], *RANGES["sharpness"]),
        "exposure": min(_ramp(m["brightness"], *RANGES["exposure"]), _ramp(m["brightness"], *EXPOSURE_HIGH)),
        "uniformity": _ramp(m["uniformity"], *RANGES["uniformity"]),
        "field": _ramp(fov_fraction, *RANGES["field"]) if found else 0.0,
        "glare": _ramp(m["glare"], *RANGES["glare"]),
    }
    return {
        "score": round(combine(components), 3),
        "components": {k: round(v, 3) for k, v in components.items()},
        "source": SOURCE,
    }


def score_of(info: dict[str, Any]) -> float | None:
    """The score recorded in a sample's JSON or a photo's info; None for shards written before it existed."""
    record = info.get("gradability")
    if not isinstance(record, dict):
        return None
    value = record.get("score")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
