"""The field of view: the circle of the retina in a fundus photo, found from its rim.

Pure functions on RGB uint8 HxWx3 arrays, no I/O. The search works on a small smoothed brightness
copy. The background level is that of the darkest corner (one dark corner is enough: fields that
fill the frame leave only the corners dark, off-centre ones cover some). Everything clearly above it
is field, however dark: a threshold just above the background (not midway to the field's level)
keeps dark maculae, haemorrhages and vignetted peripheries inside the blob. A circle fitted to the
blob's outline (dropping points on the frame, where the camera cut the field off; RANSAC when many
points are off the circle) gives a rough rim, and the rim itself is then located on radial profiles
as the steepest drop towards the background, which no threshold biases. Glows and blanks fail the
checks: a real step at the rim, field inside and background outside. With no dark surround at all,
a frame of fundus-coloured, structured content is a field that fills the frame.
Coordinates follow OpenCV's pixel-centre convention: pixel (x, y) covers [x - 0.5, x + 0.5] x [y - 0.5, y + 0.5].
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from sightx.image import circlefit

_MIN_WORK_SIDE = 120  # smaller inputs (a 32 px shard's reduced decode is ~50 px) are enlarged: the rim search needs a
# few pixels either side of the rim on every profile
_WORK_SIDE = 240  # long side of the copy find_fov analyses: a pixel is ~1% of r; the fit over hundreds of rim points is finer
_CORNER_FRAC = 0.06  # corner patches sampled for the background: outside the circle even when cut off
_FLOOR = 2.5  # grey levels above a clipped-black background that already count as lit
_NOISE_MULT = 4.0  # ... or this many background noise sigmas
# Blob thresholds, as shares of the way from background to field level, tried in turn: the lowest
# keeps dark retina in the field; higher ones cut off flare that lights the surround near the rim.
_SEG_FRACS = (0.1, 0.3, 0.5)
_MIN_CONTRAST = 4.0  # median field level above the background: a darker frame shows no field
_MIN_LIT_FRAC = 0.02  # share of the frame that must be lit at all
# Annuli (fractions of r) inside/outside the rim: wide ones give the field level near the rim,
# narrow ones check that the brightness drops at the rim itself.
_WIDE_RINGS = ((0.80, 0.92), (1.08, 1.20))
_NARROW_RINGS = ((0.94, 0.98), (1.02, 1.06))
_RING_STEPS = 170  # (d / r)^2 quantised to 1/170 for ring labels: 0.3% of r at the rim, up to 1.5 r in a byte
_MIN_INLIER_FRAC = 0.5  # share of rim points that must lie on the fitted circle
_OPEN_KERNEL = np.ones((3, 3), np.uint8)
_MIN_STEP = 0.5  # drop at the rim, as a fraction of the field level near the rim above background
_STEP_NOISE = 3.0  # ... and at least this many background noise sigmas
_PROFILES = 256  # radial profiles across the rim
_BAND = 0.1  # they span the rough rim +- this share of r
_MIN_FIELD_INSIDE = 0.5  # share of the disk that must be lit (dark lesions and maculae are not background)
_MAX_LIT_OUTSIDE = 0.15  # share of the frame beyond 1.1 r that may be lit (flare, a notch)
# A frame with no dark surround is a field that fills it only if it looks like a retina: nearly no
# dark pixels, not washed out, red above blue, and some structure.
_FILL_DARK = 0.3  # dark: below this share of the level in the middle of the frame
_FILL_DARK_FRAC = 0.03
_FILL_MAX_LEVEL = 200  # median of the darkest channel: above it the frame is a white-out
_FILL_RED_OVER_BLUE = 1.2
# Fine detail (mean |green - its 3 px blur| over the mean green, on the ~240 px copy): squares cut from inside
# real fields (EyePACS, a clinic camera) measure 0.006 and up, median 0.03; a smooth ramp of colour 0.004.
_FILL_MIN_DETAIL = 0.005
_ANGLES = np.linspace(0, 2 * np.pi, _PROFILES, endpoint=False)
_DIRS = np.column_stack([np.cos(_ANGLES), np.sin(_ANGLES)]).astype(np.float32)


@dataclass(frozen=True)
class Circle:
    """Field of view: centre and radius in pixels of the image it was found in."""

    cx: float
    cy: float
    r: float

    def scaled(self, sx: float, sy: float | None = None) -> Circle:
        """The same circle in an image resized by sx (and sy vertically, if different) as a
        DCT-scaled decode or cv2.resize does: pixel edges scale, so a centre maps as
        (x + 0.5) * s - 0.5; the radius takes the mean factor."""
        sy = sx if sy is None else sy
        return Circle((self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, self.r * (sx + sy) / 2)


# --- field of view -----------------------------------------------------------------


def find_fov(img: np.ndarray) -> Circle | None:
    """Centre and radius of the circular field of view, or None if there is none.

    Fits the rim rather than taking a bounding box, so cut-off circles, noisy backgrounds and
    the camera's notch do not move the result. A field that fills the whole frame (no rim in
    sight) gets the smallest circle holding the frame: the field reaches at least that far.
    """
    small, work, sx, sy = _working_copy(img)
    bg, noise = _background(work)
    lit = bg + max(_FLOOR, _NOISE_MULT * noise)
    hist = cv2.calcHist([work], [0], None, [256], [0, 256]).ravel()
    first = math.floor(lit) + 1  # cv2.threshold keeps values > lit
    if first > 255 or hist[first:].sum() < _MIN_LIT_FRAC * work.size:
        return _frame_filling(img, small, work)
    fg = _hist_median(hist, first)
    if fg - bg >= _MIN_CONTRAST:
        coarse = cv2.resize(work, (max(1, work.shape[1] // 2), max(1, work.shape[0] // 2)), interpolation=cv2.INTER_AREA)
        for thr in sorted({max(lit, bg + f * (fg - bg)) for f in _SEG_FRACS}):
            circle = _rim_circle(work, coarse, bg, noise, thr)
            if circle is not None:
                return circle.scaled(sx, sy)
    return _frame_filling(img, small, work)


def _working_copy(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Small RGB copy, its smoothed brightness, and the factors back to input pixels."""
    h, w = img.shape[:2]
    f = min(1.0, _WORK_SIDE / max(h, w)) if max(h, w) >= _MIN_WORK_SIDE else _MIN_WORK_SIDE / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    # Bilinear, not area averaging: much cheaper, the blur below removes the aliased noise,
    # and the rim, a long straight-ish edge at this scale, keeps its position.
    small = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
    # Max of the channels: the retina is bright in red even when green and blue are black.
    r, g, b = cv2.split(small)
    bright = cv2.max(cv2.max(r, g), b)
    work = cv2.GaussianBlur(bright, (5, 5), 1.0)
    return small, work, w / size[0], h / size[1]


def _background(work: np.ndarray) -> tuple[float, float]:
    """Background level and noise from the darkest corner: one corner outside the field is
    enough (a field that fills the frame or sits off-centre covers the others). Its lower
    quartile, not its median: a cut-off rim may cover part of the patch."""
    h, w = work.shape
    ph, pw = max(2, round(h * _CORNER_FRAC)), max(2, round(w * _CORNER_FRAC))
    patches = np.stack([work[:ph, :pw], work[:ph, -pw:], work[-ph:, :pw], work[-ph:, -pw:]]).reshape(4, -1)
    patches.sort(axis=1)
    darkest = patches[int(np.argmin(patches[:, patches.shape[1] // 4]))].astype(np.int16)  # int16: no uint8 wrap-around
    level = int(darkest[len(darkest) // 4])
    mad = np.sort(np.abs(darkest - int(darkest[len(darkest) // 2])))[len(darkest) // 2]
    return float(level), 1.4826 * float(mad)


def _hist_median(hist: np.ndarray, lo: int = 0) -> float:
    """Median of the uint8 values >= lo, from their histogram: no sort of the pixels."""
    cum = np.cumsum(hist[lo:])
    return float(lo + np.searchsorted(cum, cum[-1] / 2))


def _rim_circle(work: np.ndarray, coarse: np.ndarray, bg: float, noise: float, thr: float) -> Circle | None:
    """The rim: a rough circle from the outline of the blob above thr on `coarse`, a half-size copy
    (it only has to land within a few % of r), then the steepest drop on radial profiles across it."""
    rough = _blob_circle(coarse, thr)
    if rough is None:
        return None
    rough = rough.scaled(work.shape[1] / coarse.shape[1], work.shape[0] / coarse.shape[0])
    pts = _rim_edges(work, rough, bg)
    if len(pts) < circlefit.MIN_POINTS:
        return None
    fit = circlefit.robust_circle(pts, (rough.cx, rough.cy, rough.r))
    if fit is None or fit[1] < _MIN_INLIER_FRAC:
        return None
    c = Circle(*fit[0])
    return c if _is_plausible(work, c, bg, noise, thr) else None


def _blob_circle(work: np.ndarray, thr: float) -> Circle | None:
    """Circle fitted to the outline of the largest blob brighter than thr. Outer contours find it
    far more cheaply than labelling, and vessels and lesions (holes) are not rim."""
    _, mask = cv2.threshold(work, thr, 1, cv2.THRESH_BINARY)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _OPEN_KERNEL)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    pts = _outline_points(max(contours, key=cv2.contourArea), mask.shape)
    if len(pts) < circlefit.MIN_POINTS:
        return None
    fit = circlefit.robust_circle(pts)
    if fit is None or fit[1] < _MIN_INLIER_FRAC:
        return None
    (cx, cy, r), _ = fit
    return Circle(cx, cy, r + 0.5)  # outline points are pixel centres, half a pixel inside the edge


def _outline_points(outline: np.ndarray, shape_hw: tuple[int, ...]) -> np.ndarray:
    """Outline pixel centres that do not touch the frame (there the camera cut the circle off)."""
    h, w = shape_hw[:2]
    xy = outline.reshape(-1, 2)
    inside = ((xy > 0) & (xy < (w - 1, h - 1))).all(axis=1)
    return xy[inside].astype(np.float64)


def _rim_edges(work: np.ndarray, rough: Circle, bg: float) -> np.ndarray:
    """Rim points: on each radial profile across the rough rim, the steepest drop (the middle of
    a blurred step, whatever the levels either side), kept where it falls at least halfway to the
    background. Profiles that leave the frame before the rim (a cut-off field) give none."""
    half = max(3.0, _BAND * rough.r)
    t = np.arange(-half, half + 0.25, 0.5, dtype=np.float32)
    rad = np.float32(rough.r) + t
    xs = np.float32(rough.cx) + _DIRS[:, :1] * rad
    ys = np.float32(rough.cy) + _DIRS[:, 1:] * rad
    # NaN outside the frame: a drop that runs into the frame edge is no drop.
    prof = cv2.remap(work.astype(np.float32), xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=math.nan)
    drop = prof[:, :-1] - prof[:, 1:]
    j = np.argmax(np.nan_to_num(drop, nan=-np.inf), axis=1)
    k = 6  # samples (3 px) either side: the levels just inside and just outside the edge
    rows = np.arange(_PROFILES)
    inside = prof[rows, np.clip(j - k, 0, len(t) - 1)]
    outside = prof[rows, np.clip(j + 1 + k, 0, len(t) - 1)]
    ok = (j >= k) & (j + 1 + k < len(t)) & (j >= 1) & (j + 2 < len(t)) & (outside - bg <= 0.5 * (inside - bg))  # NaN compares False
    jj = j[ok]
    a, b, c = drop[ok, jj - 1], drop[ok, jj], drop[ok, jj + 1]
    den = a - 2 * b + c
    frac = np.where(np.abs(den) > 1e-6, 0.5 * (a - c) / np.where(np.abs(den) > 1e-6, den, 1), 0)
    r_edge = rad[jj] + 0.25 + 0.5 * np.clip(frac, -1, 1)  # drop i lies between samples i and i + 1
    return np.column_stack([rough.cx + _DIRS[ok, 0] * r_edge, rough.cy + _DIRS[ok, 1] * r_edge]).astype(np.float64)


def _is_plausible(work: np.ndarray, c: Circle, bg: float, noise: float, thr: float) -> bool:
    """A fundus: centre in frame, a real step at the rim, field inside and background outside.

    The step test (most of the drop from the field level near the rim happens within a few %
    of r) rejects smooth radial glows, whose iso-contours are circles too. The inside test
    counts lit pixels, not bright ones, so dark lesions and vignetting do not fail it.
    """
    h, w = work.shape
    if not (0 <= c.cx < w and 0 <= c.cy < h and c.r >= 0.05 * min(h, w)):
        return False
    q = cv2.convertScaleAbs(distance2_map(work.shape, c), alpha=_RING_STEPS / (c.r * c.r))  # (d / r)^2 in 1/170ths
    wide, narrow = _rim_levels(work, q, bg, _WIDE_RINGS), _rim_levels(work, q, bg, _NARROW_RINGS)
    if wide is None or narrow is None:
        return False
    if narrow[0] - narrow[1] < max(_FLOOR, _STEP_NOISE * noise, _MIN_STEP * (wide[0] - bg)):
        return False
    lit = work > thr
    disk = q <= round(_RING_STEPS * 0.9**2)
    if np.count_nonzero(lit & disk) < _MIN_FIELD_INSIDE * np.count_nonzero(disk):
        return False
    beyond = q >= round(_RING_STEPS * 1.1**2)
    n_beyond = np.count_nonzero(beyond)
    return bool(n_beyond < _MIN_LIT_FRAC * work.size or np.count_nonzero(lit & beyond) <= _MAX_LIT_OUTSIDE * n_beyond)


def _rim_levels(
    work: np.ndarray, q: np.ndarray, bg: float, rings: tuple[tuple[float, float], tuple[float, float]]
) -> tuple[float, float] | None:
    """Median brightness in a ring inside and one outside the rim (outside: bg if cut off).

    q is (d / r)^2 quantised to 1/_RING_STEPS. Both rings come from one 2-D histogram of
    (brightness, ring label): two OpenCV calls instead of two masks and two histograms.
    """
    label = cv2.LUT(q, _ring_lut(rings))
    hist = cv2.calcHist([work, label], [0, 1], None, [256, 3], [0, 256, 0, 3])
    counts = hist[:, 1:].sum(axis=0)
    if counts[0] < 20:
        return None
    inner = _hist_median(hist[:, 1])
    return inner, (_hist_median(hist[:, 2]) if counts[1] >= 20 else bg)


@functools.lru_cache(maxsize=4)
def _ring_lut(rings: tuple[tuple[float, float], tuple[float, float]]) -> np.ndarray:
    """Quantised (d / r)^2 -> 1 for the inner ring, 2 for the outer, 0 elsewhere."""
    rho2 = np.arange(256) / _RING_STEPS
    lut = np.zeros(256, np.uint8)
    for label, (lo, hi) in enumerate(rings, start=1):
        lut[(rho2 >= lo * lo) & (rho2 <= hi * hi)] = label
    lut.flags.writeable = False
    return lut


def _frame_filling(img: np.ndarray, small: np.ndarray, work: np.ndarray) -> Circle | None:
    """With no rim found: the circle through the frame's corners if the whole frame is retina,
    judged by content (no dark surround, not washed out, red above blue, fine detail), else None."""
    h, w = work.shape
    centre = work[h // 4 : h - h // 4, w // 4 : w - w // 4]
    level = _hist_median(cv2.calcHist([centre], [0], None, [256], [0, 256]).ravel())
    if np.count_nonzero(work < _FILL_DARK * level) > _FILL_DARK_FRAC * work.size:
        return None
    mean_r, mean_g, mean_b, _ = cv2.mean(small)
    if mean_r < mean_g or mean_r < _FILL_RED_OVER_BLUE * mean_b or np.median(small.min(axis=2)) > _FILL_MAX_LEVEL:
        return None
    _, std = cv2.meanStdDev(work)
    if float(std[0, 0]) < _MIN_CONTRAST or _fine_detail(small[:, :, 1]) < _FILL_MIN_DETAIL:
        return None
    h, w = img.shape[:2]
    return Circle((w - 1) / 2, (h - 1) / 2, math.hypot(w, h) / 2)


def _fine_detail(green: np.ndarray) -> float:
    """Vessels, nerve fibres and the choroid's grain against a smooth wash of colour: the mean
    difference from a 3 px blur, relative to the mean level."""
    g = green.astype(np.float32)
    return float(cv2.mean(cv2.absdiff(g, cv2.GaussianBlur(g, (0, 0), 3)))[0]) / max(float(cv2.mean(g)[0]), 1.0)


def distance2_map(shape_hw: tuple[int, ...], c: Circle) -> np.ndarray:
    """Squared distance of every pixel centre from the circle centre (float32)."""
    ys = np.arange(shape_hw[0], dtype=np.float32)[:, None] - np.float32(c.cy)
    xs = np.arange(shape_hw[1], dtype=np.float32)[None, :] - np.float32(c.cx)
    return xs * xs + ys * ys


def visible_fraction(shape_hw: tuple[int, ...], c: Circle) -> float:
    """Fraction of the circle's area inside an image frame: < 1 for cut-off fields."""
    h, w = shape_hw[:2]
    if c.r <= 0:
        return 0.0
    if c.cx - c.r >= -0.5 and c.cy - c.r >= -0.5 and c.cx + c.r <= w - 0.5 and c.cy + c.r <= h - 0.5:
        return 1.0
    n = 2048  # midpoint rule over x, exact over y: error far below 1e-3
    x = c.cx - c.r + (np.arange(n) + 0.5) * (2 * c.r / n)
    half = np.sqrt(np.maximum(c.r**2 - (x - c.cx) ** 2, 0.0))
    span = np.clip(np.minimum(c.cy + half, h - 0.5) - np.maximum(c.cy - half, -0.5), 0.0, None)
    inside_x = (x >= -0.5) & (x <= w - 0.5)
    area = float(np.sum(span * inside_x) * (2 * c.r / n))
    return area / (np.pi * c.r**2)
