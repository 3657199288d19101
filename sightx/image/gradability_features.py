"""The measures the fitted gradability model reads, from a field at gradability.ANALYSIS_SIZE.

Pure maths (RGB uint8 in, floats out). Every measure is scale-free (a ratio to the field's own
brightness or spread, or a share of its pixels), so a camera's gain or white balance moves few of
them; the absolute ones (`dark_share`, `red_saturated`) are what a grader also judges absolutely.
They were chosen from 56 candidates by what separates the real ungradable EyePACS photos from the
gradable ones under cross-validation by patient (tools/fit_gradability.py; docs/gradability.md).
What the field's framing says (its share inside the frame) was left out on purpose: on EyePACS it
tells which camera took the photo, not whether it can be read.

Groups (GROUPS) say in words why a photo scored low: the group that pulls the score down most.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from sightx.image.fov import Circle
from sightx.image.fundus import field_mask

# Measure name -> the group that explains it (the score's main reason names the group).
GROUPS: dict[str, str] = {
    "luma_p5": "exposure",  # darkest 5% of the field / its mean: shadows, a dark half
    "luma_p95": "exposure",  # brightest 5% / mean: flare, an over-exposed crescent
    "red_saturated": "exposure",  # share of saturated red: over-exposure
    "vignette": "illumination",  # rim brightness / centre brightness
    "sector_luma_cv": "illumination",  # spread of the 8 sectors' brightness
    "sector_detail_min": "illumination",  # least detailed sector / mean detail: a region washed out
    "disc_peak": "illumination",  # the optic disc's peak over the mean: a disc lost in glare or haze
    "noise_ratio": "blur",  # |Laplacian| at full / half resolution: noise, not anatomy, in the finest scale
    "band_hi": "blur",  # finest band / middle band of the green channel
    "flat_share": "blur",  # share of the field with under half the median local contrast
    "gradient": "blur",  # mean gradient magnitude of green / local brightness
    "chroma": "haze",  # colourfulness (CIELAB chroma): haze and cataract grey the field
    "lab_b": "haze",  # yellow-blue balance
    "blue_green": "haze",  # blue over green: scatter in the media
    "green_red_spread": "haze",  # green's spread over red's: the vessels' channel against the choroid's
}
FEATURES = tuple(GROUPS)
REASONS = {
    "exposure": "too dark or over-exposed",
    "illumination": "uneven illumination: part of the field is lost",
    "blur": "vessels not sharp: blur",
    "haze": "low contrast: haze or media opacity",
}

_SECTORS = 8
_LOCAL = (15, 15)  # px at 256: a few vessel widths
_HALF_LOCAL = (7, 7)  # the same reach at half size
_FLOOR = 20.0  # grey levels: brightness is taken as at least this, so noise in a dim field is not contrast
_MIN_PIXELS = 50


def features(img: np.ndarray, c: Circle, frame: tuple[float, float, float, float]) -> dict[str, float]:
    """FEATURES of a field (`c` in img's pixels; `frame` the photo's box in them)."""
    h, w = img.shape[:2]
    vis, inner = _masks(h, w, c, frame)
    n_vis = cv2.countNonZero(vis)
    if n_vis < _MIN_PIXELS:
        return dict.fromkeys(FEATURES, 0.0)
    if cv2.countNonZero(inner) < _MIN_PIXELS:
        inner = vis
    luma = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    hist = cv2.calcHist([luma], [0], vis, [256], [0, 256]).ravel()
    mean = float(hist @ np.arange(256)) / n_vis + 1e-3
    cdf = np.cumsum(hist) / n_vis
    f: dict[str, float] = {
        "luma_p5": float(np.searchsorted(cdf, 0.05)) / mean,
        "luma_p95": float(np.searchsorted(cdf, 0.95)) / mean,
        "red_saturated": cv2.countNonZero(cv2.bitwise_and(cv2.inRange(img[..., 0], 250, 255), vis)) / n_vis,
    }

    green_u8 = cv2.GaussianBlur(np.ascontiguousarray(img[..., 1]), (3, 3), 0)
    green = green_u8.astype(np.float32)
    local = np.maximum(cv2.boxFilter(green_u8, cv2.CV_32F, _LOCAL), np.float32(_FLOOR))
    fine = cv2.mean(cv2.divide(np.abs(cv2.Laplacian(green, cv2.CV_32F)), local), mask=inner)[0]
    b1 = cv2.GaussianBlur(green, (0, 0), 1)
    b3 = cv2.GaussianBlur(b1, (0, 0), 2 * math.sqrt(2))  # sigma 1 then 2.83: sigma 3 in all
    f["band_hi"] = cv2.mean(cv2.absdiff(green, b1), mask=inner)[0] / (cv2.mean(cv2.absdiff(b1, b3), mask=inner)[0] + 1e-3)

    # The rest at half size: coarser detail, and means over thousands of pixels, for a quarter of the work.
    half_size = (w // 2, h // 2)
    half = cv2.resize(green, half_size, interpolation=cv2.INTER_AREA)
    half_inner = cv2.resize(inner, half_size, interpolation=cv2.INTER_NEAREST)
    mu = cv2.blur(half, _HALF_LOCAL)
    half_local = np.maximum(mu, np.float32(_FLOOR))
    coarse = cv2.mean(cv2.divide(np.abs(cv2.Laplacian(half, cv2.CV_32F)), half_local), mask=half_inner)[0]
    f["noise_ratio"] = fine / (coarse + 1e-6)
    spread = cv2.divide(cv2.sqrt(np.maximum(cv2.blur(half * half, _HALF_LOCAL) - mu * mu, 0)), half_local)
    sample = spread[half_inner > 0]
    median = float(np.median(sample)) if sample.size else 0.0
    f["flat_share"] = float(np.count_nonzero(sample < 0.5 * median)) / max(1, sample.size)
    gradient = cv2.magnitude(cv2.Sobel(half, cv2.CV_32F, 1, 0), cv2.Sobel(half, cv2.CV_32F, 0, 1))
    f["gradient"] = cv2.mean(cv2.divide(gradient, half_local), mask=half_inner)[0]

    sectors = np.where(half_inner > 0, _sector_map(h // 2, w // 2, round(c.cx) / 2, round(c.cy) / 2), _SECTORS).ravel()
    counts = np.bincount(sectors, minlength=_SECTORS + 1)[:_SECTORS]
    full = counts > _MIN_PIXELS
    half_luma = cv2.resize(luma, half_size, interpolation=cv2.INTER_AREA)
    lum = (np.bincount(sectors, half_luma.ravel(), _SECTORS + 1)[:_SECTORS] / np.maximum(counts, 1))[full]
    det = (np.bincount(sectors, spread.ravel(), _SECTORS + 1)[:_SECTORS] / np.maximum(counts, 1))[full]
    lum, det = (lum, det) if lum.size else (np.array([mean]), np.array([1.0]))
    f["sector_luma_cv"] = float(lum.std() / (lum.mean() + 1e-6))
    f["sector_detail_min"] = float(det.min() / (det.mean() + 1e-6))
    rings = _ring_map(h, w, round(c.cx * 2) / 2, round(c.cy * 2) / 2, round(c.r * 2) / 2)
    centre = cv2.bitwise_and(vis, (rings == 0).view(np.uint8))
    rim = cv2.bitwise_and(vis, (rings == 2).view(np.uint8))
    has = cv2.countNonZero(centre) and cv2.countNonZero(rim)
    f["vignette"] = (cv2.mean(luma, mask=rim)[0] + 1) / (cv2.mean(luma, mask=centre)[0] + 1) if has else 1.0
    quarter = cv2.resize(luma, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    peak = cv2.GaussianBlur(quarter, (0, 0), 1.5)  # sigma 6 px at full size: about the optic disc's radius
    f["disc_peak"] = cv2.minMaxLoc(peak, mask=cv2.resize(inner, (w // 4, h // 4), interpolation=cv2.INTER_NEAREST))[1] / mean

    half_vis = cv2.resize(vis, half_size, interpolation=cv2.INTER_NEAREST)
    lab = cv2.cvtColor(
        cv2.resize(img, half_size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2LAB
    )  # field-wide means: half size holds them
    a = lab[..., 1].astype(np.float32) - 128
    b = lab[..., 2].astype(np.float32) - 128
    f["chroma"] = cv2.mean(cv2.magnitude(a, b), mask=half_vis)[0]
    f["lab_b"] = cv2.mean(b, mask=half_vis)[0]
    means = cv2.mean(img, mask=vis)
    f["blue_green"] = (means[2] + 1) / (means[1] + 1)
    _, red_sd = cv2.meanStdDev(img[..., 0], mask=inner)
    _, green_sd = cv2.meanStdDev(img[..., 1], mask=inner)
    f["green_red_spread"] = (float(green_sd[0, 0]) + 1) / (float(red_sd[0, 0]) + 1)
    return f


def _masks(h: int, w: int, c: Circle, frame: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 masks: the visible field, and its inner 0.9 r kept 6 px (the filters' reach) off the frame's cut edges."""
    x0, y0 = max(0, math.ceil(frame[0])), max(0, math.ceil(frame[1]))
    x1, y1 = min(w, math.floor(frame[2])), min(h, math.floor(frame[3]))
    vis = np.zeros((h, w), np.uint8)
    vis[y0:y1, x0:x1] = field_mask(h, w, c, 1.0)[y0:y1, x0:x1]
    m = 6
    iy0, ix0 = y0 + (m if y0 > 0 else 0), x0 + (m if x0 > 0 else 0)
    iy1, ix1 = y1 - (m if y1 < h else 0), x1 - (m if x1 < w else 0)
    inner = np.zeros((h, w), np.uint8)
    inner[iy0:iy1, ix0:ix1] = field_mask(h, w, c, 0.9)[iy0:iy1, ix0:ix1]
    return vis, inner


@functools.lru_cache(maxsize=16)
def _sector_map(h: int, w: int, cx: float, cy: float) -> np.ndarray:
    """Each pixel's sector (0-7) by its angle around the centre."""
    ys, xs = np.mgrid[0:h, 0:w]
    angle = np.arctan2(ys - cy, xs - cx)
    out = np.minimum(((angle + math.pi) / (2 * math.pi) * _SECTORS).astype(np.intp), _SECTORS - 1)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=16)
def _ring_map(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    """0 in the centre (under 0.45 r), 2 at the rim (over 0.7 r), 1 between."""
    ys, xs = np.mgrid[0:h, 0:w]
    radius = np.hypot(ys - cy, xs - cx) / max(r, 1.0)
    out = np.where(radius < 0.45, 0, np.where(radius > 0.7, 2, 1)).astype(np.uint8)
    out.flags.writeable = False
    return out
