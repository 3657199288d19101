"""The field of view: the circle of the retina in a fundus photo, found from its rim.

Pure functions on RGB uint8 HxWx3 arrays, no I/O. The search thresholds a small smoothed brightness
copy against the background level from the corners, fits a circle to the outline of the largest blob
(dropping points on the frame, where the field is cut off), re-selects inliers (RANSAC over 3-point
circles when a fit to all points leaves many off the circle), refits at a threshold between the levels
just inside and outside the rim, and rejects glows and blanks. Coordinates follow OpenCV's pixel-centre
convention: pixel (x, y) covers [x - 0.5, x + 0.5] x [y - 0.5, y + 0.5].
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

_WORK_SIDE = 240  # long side of the copy find_fov analyses: a pixel is ~1% of r; the fit over hundreds of rim points is finer
_CORNER_FRAC = 0.06  # corner patches sampled for the background: outside the circle even when cut off
_MIN_CONTRAST = 8.0  # retina must stand this many grey levels above the background
_NOISE_MULT = 6.0  # ... and this many background noise sigmas
# Annuli (fractions of r) inside/outside the rim: wide ones set the refined threshold,
# narrow ones check that the brightness drops at the rim itself.
_WIDE_RINGS = ((0.80, 0.92), (1.08, 1.20))
_NARROW_RINGS = ((0.94, 0.98), (1.02, 1.06))
_RING_STEPS = 170  # (d / r)^2 quantised to 1/170 for ring labels: 0.3% of r at the rim, up to 1.5 r in a byte
_INLIER_TOL = 1.5  # rim-point residual (working pixels) that still counts as on the circle
_RANSAC_ITERS = 128
_RANSAC_VOTERS = 200
_MIN_RIM_POINTS = 24
_MIN_INLIER_FRAC = 0.5
_OPEN_KERNEL = np.ones((3, 3), np.uint8)
_QUICK_INLIER_FRAC = 0.8  # a fit to all rim points holding this share of them is taken without RANSAC
_MIN_IOU = 0.85  # the foreground blob must actually look like the fitted disk
_MIN_STEP = 0.5  # drop at the rim, as a fraction of the inner level above background
# RANSAC triples as fractions of the rim-point list: a fixed table, so a fit never depends on
# what a worker processed before (as a shared generator's state would).
_TRIPLES = np.random.default_rng(0).random((_RANSAC_ITERS, 3))


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

    Fits the rim rather than taking a bounding box, so cut-off circles, noisy
    backgrounds and the camera's notch do not move the result.
    """
    work, sx, sy = _working_copy(img)
    bg, noise = _background(work)
    otsu, _ = cv2.threshold(work, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    hist = cv2.calcHist([work], [0], None, [256], [0, 256]).ravel()
    if hist[int(otsu) + 1 :].sum() == 0:
        return None
    fg = _hist_median(hist, int(otsu) + 1)
    if fg - bg < max(_MIN_CONTRAST, _NOISE_MULT * noise):
        return None
    # Pass 1 with a global threshold on a half-size copy (it only needs to find the rim),
    # pass 2 at full working size with levels measured right at the rim, which corrects
    # for dark peripheries and vignetted backgrounds.
    coarse = cv2.resize(work, (max(1, work.shape[1] // 2), max(1, work.shape[0] // 2)), interpolation=cv2.INTER_AREA)
    fit = _fit_at_threshold(coarse, max((bg + otsu) / 2, bg + 3 * noise))
    if fit is None:
        return None
    rough = fit[0].scaled(work.shape[1] / coarse.shape[1], work.shape[0] / coarse.shape[0])
    levels = _rim_levels(coarse, distance2_map(coarse.shape, fit[0]), fit[0].r, bg, _WIDE_RINGS)
    if levels is None:
        return None
    inner, outer = levels
    fit = _fit_at_threshold(work, max((inner + outer) / 2, outer + 3 * noise), near=rough)
    if fit is None or not _is_plausible(work, *fit, bg, inner):
        return None
    return fit[0].scaled(sx, sy)


def _working_copy(img: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Small, smoothed brightness image plus the factors back to input pixels."""
    h, w = img.shape[:2]
    f = min(1.0, _WORK_SIDE / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    # Bilinear, not area averaging: much cheaper, the blur below removes the aliased noise,
    # and the rim, a long straight-ish edge at this scale, keeps its position.
    small = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
    # Max of the channels: the retina is bright in red even when green and blue are black.
    r, g, b = cv2.split(small)
    bright = cv2.max(cv2.max(r, g), b)
    work = cv2.GaussianBlur(bright, (5, 5), 1.0)
    return work, w / size[0], h / size[1]


def _background(work: np.ndarray) -> tuple[float, float]:
    """Background level and noise from the corners, which lie outside any fundus circle."""
    h, w = work.shape
    ph, pw = max(2, round(h * _CORNER_FRAC)), max(2, round(w * _CORNER_FRAC))
    patches = np.stack([work[:ph, :pw], work[:ph, -pw:], work[-ph:, :pw], work[-ph:, -pw:]]).reshape(4, -1)
    patches.sort(axis=1)
    mid = patches.shape[1] // 2
    levels = patches[:, mid : mid + 1].astype(np.int16)
    deviations = np.abs(patches - levels)  # int16: no uint8 wrap-around
    deviations.sort(axis=1)
    # Median over corners: one corner may be clipped by an off-centre circle.
    return _median4(levels.ravel().tolist()), 1.4826 * _median4(deviations[:, mid].tolist())


def _median4(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return (ordered[1] + ordered[2]) / 2


def _hist_median(hist: np.ndarray, lo: int = 0) -> float:
    """Median of the uint8 values >= lo, from their histogram: no sort of the pixels."""
    cum = np.cumsum(hist[lo:])
    return float(lo + np.searchsorted(cum, cum[-1] / 2))


def _rim_levels(
    work: np.ndarray, d2: np.ndarray, r: float, bg: float, rings: tuple[tuple[float, float], tuple[float, float]]
) -> tuple[float, float] | None:
    """Median brightness in a ring inside and one outside the rim (outside: bg if cut off).

    d2 is the squared distance map from the circle's centre. Both rings come from one 2-D
    histogram of (brightness, ring label), the label looked up from d2 / r^2 quantised to
    1/_RING_STEPS: three OpenCV calls instead of two masks and two histograms.
    """
    q = cv2.convertScaleAbs(d2, alpha=_RING_STEPS / (r * r))
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


def _fit_at_threshold(work: np.ndarray, thr: float, near: Circle | None = None) -> tuple[Circle, np.ndarray] | None:
    """Circle fitted to the outline of the largest blob brighter than thr, plus that outline.
    Outer contours find it far more cheaply than labelling, and vessels and lesions (holes) are not rim.

    With `near` (the first pass's circle), the fit starts from it instead of a RANSAC search.
    """
    _, mask = cv2.threshold(work, thr, 1, cv2.THRESH_BINARY)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _OPEN_KERNEL)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    outline = max(contours, key=cv2.contourArea)
    pts = _outline_points(outline, mask.shape)
    if len(pts) < _MIN_RIM_POINTS:
        return None
    fit = _robust_circle(pts, near)
    if fit is None:
        return None
    c, inlier_frac = fit
    if inlier_frac < _MIN_INLIER_FRAC:
        return None
    return Circle(c.cx, c.cy, c.r + 0.5), outline  # outline points are pixel centres, half a pixel inside the edge


def _outline_points(outline: np.ndarray, shape_hw: tuple[int, ...]) -> np.ndarray:
    """Outline pixel centres that do not touch the frame (there the camera cut the circle off)."""
    h, w = shape_hw[:2]
    xy = outline.reshape(-1, 2)
    inside = ((xy > 0) & (xy < (w - 1, h - 1))).all(axis=1)
    return xy[inside].astype(np.float64)


def _robust_circle(pts: np.ndarray, near: Circle | None = None) -> tuple[Circle, float] | None:
    """RANSAC over 3-point circles (or start from `near`), then Kasa refits on the inliers.

    Triples and voters come from fixed tables, so the same image always gives the same circle.
    """
    if near is not None:
        return _refit(pts, _residuals(pts, near.cx, near.cy, near.r) < 2 * _INLIER_TOL)
    # Most rims are clean: a fit to every point that then holds most of them needs no search.
    quick = _refit(pts, np.ones(len(pts), bool))
    if quick is not None and quick[1] >= _QUICK_INLIER_FRAC:
        return quick
    n = len(pts)
    cand = _circles_through(pts[(_TRIPLES * n).astype(np.intp)])
    # Votes from a fixed-size, evenly spread sample of the rim: as decisive as all points, a fraction of the cost.
    voters = pts[np.linspace(0, n - 1, min(n, _RANSAC_VOTERS)).astype(np.intp)].astype(np.float32)
    c32 = cand.astype(np.float32)
    dx = voters[None, :, 0] - c32[:, :1]
    dy = voters[None, :, 1] - c32[:, 1:2]
    d2 = dx * dx + dy * dy
    # |distance - r| < tol, compared squared: no square roots over the whole table.
    lo = np.maximum(c32[:, 2:] - _INLIER_TOL, 0) ** 2
    votes = ((d2 > lo) & (d2 < (c32[:, 2:] + _INLIER_TOL) ** 2)).sum(axis=1)  # NaN (collinear triple) never votes
    best = cand[int(np.argmax(votes))]
    return _refit(pts, _residuals(pts, *best) < _INLIER_TOL)


def _residuals(pts: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    d = pts - (cx, cy)
    return np.abs(np.sqrt(np.einsum("ij,ij->i", d, d)) - r)


def _refit(pts: np.ndarray, inliers: np.ndarray) -> tuple[Circle, float] | None:
    """Kasa fits on the inliers, re-selecting inliers after each until they settle (3 at most);
    returns the circle and inlier share."""
    for _ in range(3):
        k = np.count_nonzero(inliers)
        if k < _MIN_RIM_POINTS:
            return None
        fit = _kasa(pts if k == len(pts) else pts[inliers])
        if fit is None:
            return None
        cx, cy, r = fit
        again = _residuals(pts, cx, cy, r) < _INLIER_TOL
        settled = bool((again == inliers).all())
        inliers = again
        if settled:
            break
    return Circle(cx, cy, r), np.count_nonzero(inliers) / len(pts)


def _circles_through(tri: np.ndarray) -> np.ndarray:
    """(cx, cy, r) of the circle through each point triple; NaN for collinear ones."""
    (x1, y1), (x2, y2), (x3, y3) = (tri[:, i, :].T for i in range(3))
    d = 2 * (x1 * (y2 - y3) + x2 * (y3 - y1) + x3 * (y1 - y2))
    d = np.where(np.abs(d) < 1e-9, np.nan, d)
    s1, s2, s3 = x1**2 + y1**2, x2**2 + y2**2, x3**2 + y3**2
    cx = (s1 * (y2 - y3) + s2 * (y3 - y1) + s3 * (y1 - y2)) / d
    cy = (s1 * (x3 - x2) + s2 * (x1 - x3) + s3 * (x2 - x1)) / d
    return np.column_stack([cx, cy, np.hypot(x1 - cx, y1 - cy)])


def _kasa(pts: np.ndarray) -> tuple[float, float, float] | None:
    """Algebraic least-squares circle (Kasa) in closed form, on centred points for conditioning:
    x^2 + y^2 = p x + q y + c, where centring decouples c from the 2x2 system for p, q.
    All the sums come from one 2x3 matrix product. None for collinear points."""
    n = len(pts)
    mx, my = (pts.sum(axis=0) / n).tolist()
    c = pts - (mx, my)
    z = np.einsum("ij,ij->i", c, c)
    (sxx, sxy, sxz), (_, syy, syz) = (c.T @ np.column_stack((c, z))).tolist()
    det = sxx * syy - sxy * sxy
    if det <= 1e-9 * max(sxx * syy, 1.0):
        return None
    cx = (sxz * syy - syz * sxy) / det / 2
    cy = (syz * sxx - sxz * sxy) / det / 2
    return cx + mx, cy + my, math.sqrt(max((sxx + syy) / n + cx * cx + cy * cy, 0.0))


def _is_plausible(work: np.ndarray, c: Circle, outline: np.ndarray, bg: float, inner: float) -> bool:
    """A fundus: centre in frame, a real step at the rim, and a blob shaped like the disk.

    The step test (most of the drop from `inner`, the level just inside the rim that set the
    threshold, happens within a few % of r) rejects smooth radial glows, whose iso-contours
    are circles too.
    """
    h, w = work.shape
    if not (0 <= c.cx < w and 0 <= c.cy < h and c.r >= 0.05 * min(h, w)):
        return False
    d2 = distance2_map(work.shape, c)
    narrow = _rim_levels(work, d2, c.r, bg, _NARROW_RINGS)
    if narrow is None:
        return False
    if narrow[0] - narrow[1] < max(_MIN_CONTRAST, _MIN_STEP * (inner - bg)):
        return False
    blob = np.zeros_like(work)
    cv2.drawContours(blob, [outline], -1, 1, thickness=cv2.FILLED)  # filled: holes are not rim
    disk = d2 <= c.r * c.r
    union = np.count_nonzero(disk | blob)
    return bool(np.count_nonzero(disk & blob) >= _MIN_IOU * union)


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
