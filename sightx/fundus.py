"""Fundus image maths: field of view, crop, mask, resize, normalisation, quality.

Pure functions on RGB uint8 HxWx3 arrays, no I/O, so tests can feed arrays of
known geometry. Coordinates follow OpenCV's pixel-centre convention: pixel
(x, y) covers [x - 0.5, x + 0.5] x [y - 0.5, y + 0.5].
"""

from __future__ import annotations

import functools
import math

from dataclasses import dataclass

import cv2
import numpy as np

NORMALIZERS = ("graham", "clahe", "none")

_WORK_SIDE = 240  # long side of the copy find_fov analyses: a pixel is ~1% of r; the fit over hundreds of rim points is finer
_CORNER_FRAC = 0.06  # corner patches sampled for the background: outside the circle even when cut off
_MIN_CONTRAST = 8.0  # retina must stand this many grey levels above the background
_NOISE_MULT = 6.0  # ... and this many background noise sigmas
# Annuli (fractions of r) inside/outside the rim: wide ones set the refined threshold,
# narrow ones check that the brightness drops at the rim itself.
_WIDE_RINGS = ((0.80, 0.92), (1.08, 1.20))
_NARROW_RINGS = ((0.94, 0.98), (1.02, 1.06))
_INLIER_TOL = 1.5  # rim-point residual (working pixels) that still counts as on the circle
_RANSAC_ITERS = 128
_RANSAC_VOTERS = 200
_MIN_RIM_POINTS = 24
_MIN_INLIER_FRAC = 0.5
_MIN_IOU = 0.85  # the foreground blob must actually look like the fitted disk
_MIN_STEP = 0.5  # drop at the rim, as a fraction of the inner level above background


@dataclass(frozen=True)
class Circle:
    """Field of view: centre and radius in pixels of the image it was found in."""

    cx: float
    cy: float
    r: float

    def scaled(self, s: float) -> Circle:
        """The same circle in an image resized by factor s (e.g. a DCT-scaled decode)."""
        return Circle(self.cx * s, self.cy * s, self.r * s)


# --- field of view -----------------------------------------------------------------


def find_fov(img: np.ndarray) -> Circle | None:
    """Centre and radius of the circular field of view, or None if there is none.

    Fits the rim rather than taking a bounding box, so cut-off circles, noisy
    backgrounds and the camera's notch do not move the result.
    """
    work, sx, sy = _working_copy(img)
    bg, noise = _background(work)
    otsu, _ = cv2.threshold(work, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    above = work[work > otsu]
    if above.size == 0:
        return None
    fg = float(np.median(above))
    if fg - bg < max(_MIN_CONTRAST, _NOISE_MULT * noise):
        return None
    # Pass 1 with a global threshold, pass 2 with levels measured right at the rim,
    # which corrects for dark peripheries and vignetted backgrounds.
    fit = _fit_at_threshold(work, max((bg + otsu) / 2, bg + 3 * noise))
    levels = None if fit is None else _rim_levels(work, fit[0], bg, _WIDE_RINGS)
    if levels is None:
        return None
    inner, outer = levels
    fit = _fit_at_threshold(work, max((inner + outer) / 2, outer + 3 * noise), near=fit[0])
    if fit is None or not _is_plausible(work, *fit, bg):
        return None
    c = fit[0]
    return Circle((c.cx + 0.5) * sx - 0.5, (c.cy + 0.5) * sy - 0.5, c.r * (sx + sy) / 2)


def _working_copy(img: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Small, smoothed brightness image plus the factors back to input pixels."""
    h, w = img.shape[:2]
    f = min(1.0, _WORK_SIDE / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    # Bilinear is 7x cheaper than area averaging here; the blur below removes the aliased noise,
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
    patches = [work[:ph, :pw], work[:ph, -pw:], work[-ph:, :pw], work[-ph:, -pw:]]
    levels = [float(np.median(p)) for p in patches]
    mads = [float(np.median(np.abs(p - lv))) for p, lv in zip(patches, levels)]
    # Median over corners: one corner may be clipped by an off-centre circle.
    return float(np.median(levels)), 1.4826 * float(np.median(mads))


def _rim_levels(
    work: np.ndarray, c: Circle, bg: float, rings: tuple[tuple[float, float], tuple[float, float]]
) -> tuple[float, float] | None:
    """Median brightness in a ring inside and one outside the rim (outside: bg if cut off)."""
    d = _distance_map(work.shape, c)
    (i0, i1), (o0, o1) = rings
    inner = work[(d >= i0 * c.r) & (d <= i1 * c.r)]
    outer = work[(d >= o0 * c.r) & (d <= o1 * c.r)]
    if inner.size < 20:
        return None
    return float(np.median(inner)), (float(np.median(outer)) if outer.size >= 20 else bg)


def _fit_at_threshold(work: np.ndarray, thr: float, near: Circle | None = None) -> tuple[Circle, np.ndarray] | None:
    """Circle fitted to the rim of the largest blob brighter than thr, plus that blob.

    With `near` (the first pass's circle), the fit starts from it instead of a RANSAC search.
    """
    mask = (work > thr).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    blob = _largest_filled_blob(mask)
    if blob is None:
        return None
    pts = _rim_points(blob)
    if len(pts) < _MIN_RIM_POINTS:
        return None
    fit = _robust_circle(pts, near)
    if fit is None:
        return None
    c, inlier_frac = fit
    if inlier_frac < _MIN_INLIER_FRAC:
        return None
    return c, blob


def _largest_filled_blob(mask: np.ndarray) -> np.ndarray | None:
    """Largest blob (by outline area) with holes filled (vessels and lesions are not rim).

    Outer contours alone find it: 8x cheaper than labelling every component.
    """
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, [max(contours, key=cv2.contourArea)], -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def _rim_points(blob: np.ndarray) -> np.ndarray:
    """Per-row left/right and per-column top/bottom blob edges, minus those on the frame.

    Edge points that touch the image border are where the camera cut the circle
    off, not the rim. The +-0.5 puts each point on the pixel boundary.
    """
    h, w = blob.shape
    rows = np.flatnonzero(blob.any(axis=1))
    cols = np.flatnonzero(blob.any(axis=0))
    left = blob[rows].argmax(axis=1)
    right = w - 1 - blob[rows, ::-1].argmax(axis=1)
    top = blob[:, cols].argmax(axis=0)
    bottom = h - 1 - blob[::-1, cols].argmax(axis=0)
    parts = [
        np.column_stack([left - 0.5, rows])[left > 0],
        np.column_stack([right + 0.5, rows])[right < w - 1],
        np.column_stack([cols, top - 0.5])[top > 0],
        np.column_stack([cols, bottom + 0.5])[bottom < h - 1],
    ]
    return np.concatenate(parts).astype(np.float64)


def _robust_circle(pts: np.ndarray, near: Circle | None = None) -> tuple[Circle, float] | None:
    """RANSAC over 3-point circles (or start from `near`), then Kasa refits on the inliers.

    Seeded, so the same image always gives the same circle.
    """
    if near is not None:
        res = np.abs(np.hypot(pts[:, 0] - near.cx, pts[:, 1] - near.cy) - near.r)
        return _refit(pts, res < 2 * _INLIER_TOL)
    rng = np.random.default_rng(0)
    tri = pts[rng.integers(0, len(pts), size=(_RANSAC_ITERS, 3))]
    cand = _circles_through(tri)
    # Votes from a fixed-size sample of the rim: as decisive as all points, a fraction of the cost.
    voters = pts[rng.choice(len(pts), min(len(pts), _RANSAC_VOTERS), replace=False)]
    res = np.abs(np.hypot(voters[None, :, 0] - cand[:, :1], voters[None, :, 1] - cand[:, 1:2]) - cand[:, 2:])
    votes = (res < _INLIER_TOL).sum(axis=1)  # NaN (collinear triple) never votes
    best = cand[int(np.argmax(votes))]
    return _refit(pts, np.abs(np.hypot(pts[:, 0] - best[0], pts[:, 1] - best[1]) - best[2]) < _INLIER_TOL)


def _refit(pts: np.ndarray, inliers: np.ndarray) -> tuple[Circle, float] | None:
    """Kasa fits on the inliers, re-selecting inliers after each; returns the circle and inlier share."""
    for _ in range(3):
        if inliers.sum() < _MIN_RIM_POINTS:
            return None
        cx, cy, r = _kasa(pts[inliers])
        inliers = np.abs(np.hypot(pts[:, 0] - cx, pts[:, 1] - cy) - r) < _INLIER_TOL
    return Circle(cx, cy, r), float(inliers.mean())


def _circles_through(tri: np.ndarray) -> np.ndarray:
    """(cx, cy, r) of the circle through each point triple; NaN for collinear ones."""
    (x1, y1), (x2, y2), (x3, y3) = (tri[:, i, :].T for i in range(3))
    d = 2 * (x1 * (y2 - y3) + x2 * (y3 - y1) + x3 * (y1 - y2))
    d = np.where(np.abs(d) < 1e-9, np.nan, d)
    s1, s2, s3 = x1**2 + y1**2, x2**2 + y2**2, x3**2 + y3**2
    cx = (s1 * (y2 - y3) + s2 * (y3 - y1) + s3 * (y1 - y2)) / d
    cy = (s1 * (x3 - x2) + s2 * (x1 - x3) + s3 * (x2 - x1)) / d
    return np.column_stack([cx, cy, np.hypot(x1 - cx, y1 - cy)])


def _kasa(pts: np.ndarray) -> tuple[float, float, float]:
    """Algebraic least-squares circle (Kasa), on centred points for conditioning."""
    mean = pts.mean(axis=0)
    x, y = (pts - mean).T
    a = np.column_stack([x, y, np.ones_like(x)])
    (p, q, c), *_ = np.linalg.lstsq(a, x**2 + y**2, rcond=None)
    cx, cy = p / 2, q / 2
    return float(cx + mean[0]), float(cy + mean[1]), float(np.sqrt(max(c + cx**2 + cy**2, 0.0)))


def _is_plausible(work: np.ndarray, c: Circle, blob: np.ndarray, bg: float) -> bool:
    """A fundus: centre in frame, a real step at the rim, and a blob shaped like the disk.

    The step test (most of the drop happens within a few % of r) rejects smooth
    radial glows, whose iso-contours are circles too.
    """
    h, w = blob.shape
    if not (0 <= c.cx < w and 0 <= c.cy < h and c.r >= 0.05 * min(h, w)):
        return False
    wide = _rim_levels(work, c, bg, _WIDE_RINGS)
    narrow = _rim_levels(work, c, bg, _NARROW_RINGS)
    if wide is None or narrow is None:
        return False
    if narrow[0] - narrow[1] < max(_MIN_CONTRAST, _MIN_STEP * (wide[0] - bg)):
        return False
    disk = _distance_map(blob.shape, c) <= c.r
    union = np.count_nonzero(disk | blob)
    return np.count_nonzero(disk & blob) >= _MIN_IOU * union


def _distance_map(shape_hw: tuple[int, ...], c: Circle) -> np.ndarray:
    """Distance of every pixel centre from the circle centre (float32)."""
    ys = np.arange(shape_hw[0], dtype=np.float32)[:, None] - np.float32(c.cy)
    xs = np.arange(shape_hw[1], dtype=np.float32)[None, :] - np.float32(c.cx)
    return np.sqrt(xs * xs + ys * ys)


def visible_fraction(shape_hw: tuple[int, ...], c: Circle) -> float:
    """Fraction of the circle's area inside an image frame: < 1 for cut-off fields."""
    h, w = shape_hw[:2]
    n = 2048  # midpoint rule over x, exact over y: error far below 1e-3
    x = c.cx - c.r + (np.arange(n) + 0.5) * (2 * c.r / n)
    half = np.sqrt(np.maximum(c.r**2 - (x - c.cx) ** 2, 0.0))
    span = np.clip(np.minimum(c.cy + half, h - 0.5) - np.maximum(c.cy - half, -0.5), 0.0, None)
    inside_x = (x >= -0.5) & (x <= w - 0.5)
    area = float(np.sum(span * inside_x) * (2 * c.r / n))
    return area / (np.pi * c.r**2) if c.r > 0 else 0.0


# --- geometry ----------------------------------------------------------------------


def square_crop(img: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
    """Square of side round(2r) centred on the circle, black where it leaves the image
    (a view of img when the square lies inside it).

    Padding instead of clipping keeps cut-off fields centred and at the same scale
    as complete ones.
    """
    side = max(1, round(2 * c.r))
    x0 = round(c.cx - (side - 1) / 2)
    y0 = round(c.cy - (side - 1) / 2)
    h, w = img.shape[:2]
    if x0 >= 0 and y0 >= 0 and x0 + side <= w and y0 + side <= h:
        return img[y0 : y0 + side, x0 : x0 + side], Circle(c.cx - x0, c.cy - y0, c.r)  # a view: no copy
    out = np.zeros((side, side) + img.shape[2:], dtype=img.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return out, Circle(c.cx - x0, c.cy - y0, c.r)


def mask_outside(img: np.ndarray, box: tuple[float, float, float, float], margin: float) -> np.ndarray:
    """Black outside box (x0, y0, x1, y1) shrunk by margin: hides where a cut-off field's padding
    meets the retina, which local-contrast normalisation turns into a bright stripe."""
    h, w = img.shape[:2]
    x0, y0 = max(0, math.ceil(box[0] + margin)), max(0, math.ceil(box[1] + margin))
    x1, y1 = min(w, math.floor(box[2] - margin)), min(h, math.floor(box[3] - margin))
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return img
    out = img.copy()
    out[:y0] = 0
    out[y1:] = 0
    out[:, :x0] = 0
    out[:, x1:] = 0
    return out


def circle_mask(shape_hw: tuple[int, ...], c: Circle, scale: float = 1.0) -> np.ndarray:
    """Boolean mask of pixel centres within scale * r of the centre."""
    return _distance_map(shape_hw, c) <= np.float32(scale * c.r)


def _mask_u8(h: int, w: int, c: Circle, scale: float) -> np.ndarray:
    """circle_mask as uint8, cached: after crop_resize every image has (nearly) the same circle,
    so the circle is snapped to half pixels, far below what a mask edge can show."""
    return _cached_mask(h, w, round(c.cx * 2) / 2, round(c.cy * 2) / 2, round(c.r * 2) / 2, scale)


@functools.lru_cache(maxsize=64)
def _cached_mask(h: int, w: int, cx: float, cy: float, r: float, scale: float) -> np.ndarray:
    mask = circle_mask((h, w), Circle(cx, cy, r), scale).astype(np.uint8)
    mask.flags.writeable = False
    return mask


def apply_mask(img: np.ndarray, c: Circle, scale: float = 1.0) -> np.ndarray:
    """Black outside scale * r: hides the rim halo and the noisy background."""
    mask = _mask_u8(img.shape[0], img.shape[1], c, scale)
    return cv2.bitwise_and(img, img, mask=mask)


def crop_resize(img: np.ndarray, c: Circle, size: int) -> tuple[np.ndarray, Circle, tuple[float, float, float, float]]:
    """The size x size square around the circle (black where the field is cut off).

    Returns the image, the circle in its pixels and the original frame's box (x0, y0, x1, y1)
    in its pixels, so callers can blank what lies outside the photo.
    """
    crop, cc = square_crop(img, c)
    k = size / crop.shape[0]
    ox, oy = c.cx - cc.cx, c.cy - cc.cy  # crop origin in img pixels
    box = (-ox * k, -oy * k, (img.shape[1] - ox) * k, (img.shape[0] - oy) * k)
    return resize(crop, size), cc.scaled(k), box


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """size x size, anti-aliased: area averaging to shrink by 2x or more, bilinear below that
    (after a DCT-scaled decode the shrink is under 2x, where bilinear is 4x cheaper and as
    clean), bicubic to enlarge."""
    if img.shape[0] < size or img.shape[1] < size:
        interp = cv2.INTER_CUBIC
    else:
        interp = cv2.INTER_AREA if min(img.shape[:2]) >= 2 * size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


# --- colour normalisation ----------------------------------------------------------


def graham(img: np.ndarray, r: float) -> np.ndarray:
    """Ben Graham's local average colour subtraction: 4*img - 4*blur(img, r/30) + 128.

    Removes illumination and pigmentation differences between cameras and eyes
    while keeping vessels and lesions. The wide blur runs at reduced resolution
    (about 8x cheaper, visually identical); the sigma is corrected for the
    smoothing that the down- and up-sampling add (box (d^2-1)/12, linear (d^2-1)/6).
    """
    sigma = r / 30
    h, w = img.shape[:2]
    d = max(1, int(sigma // 2))  # keeps the reduced-resolution sigma >= ~2 px
    small = cv2.resize(img, (max(1, round(w / d)), max(1, round(h / d))), interpolation=cv2.INTER_AREA)
    fd = w / small.shape[1]
    small_sigma = np.sqrt(sigma**2 - (fd**2 - 1) / 4) / fd
    blur = cv2.GaussianBlur(small, (0, 0), small_sigma)
    blur = cv2.resize(blur, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(img, 4, blur, -4, 128)


def clahe(img: np.ndarray) -> np.ndarray:
    """CLAHE on LAB lightness: evens out exposure without shifting colours."""
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def normalize(img: np.ndarray, method: str, r: float) -> np.ndarray:
    """Apply the named normaliser; r is the field radius in img's pixels."""
    if method == "graham":
        return graham(img, r)
    if method == "clahe":
        return clahe(img)
    if method == "none":
        return img
    raise ValueError(f"unknown normalizer {method!r}; expected one of {NORMALIZERS}")


# --- quality -----------------------------------------------------------------------


def quality_metrics(img: np.ndarray, c: Circle) -> dict[str, float]:
    """Brightness, contrast and sharpness of the field, for filtering and reports.

    Sharpness uses only 0.9 r so the rim's step edge does not count as detail.
    """
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    field = _mask_u8(gray.shape[0], gray.shape[1], c, 1.0)
    inner = _mask_u8(gray.shape[0], gray.shape[1], c, 0.9)
    mean, std = cv2.meanStdDev(gray, mask=field)
    _, lap_std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_32F), mask=inner)
    return {
        "brightness": round(float(mean[0, 0]), 3),
        "contrast": round(float(std[0, 0]), 3),
        "sharpness": round(float(lap_std[0, 0]) ** 2, 3),
    }
