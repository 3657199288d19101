"""Fundus image maths after the field of view is known: crop, mask, resize, normalisation, measures.

Pure functions on RGB uint8 HxWx3 arrays, no I/O, so tests can feed arrays of known geometry
(the field of view itself is found by `sightx.image.fov`). Coordinates follow OpenCV's pixel-centre
convention: pixel (x, y) covers [x - 0.5, x + 0.5] x [y - 0.5, y + 0.5].
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from sightx.image.fov import Circle, distance2_map

NORMALIZERS = ("graham", "clahe", "none")


# --- geometry ----------------------------------------------------------------------


def square_crop(img: np.ndarray, c: Circle, side: int | None = None) -> tuple[np.ndarray, Circle]:
    """Square of side round(2r) (or `side`) centred on the circle, black where it leaves the image
    (a view of img when the square lies inside it).

    Padding instead of clipping keeps cut-off fields centred and at the same scale
    as complete ones.
    """
    side = max(1, round(2 * c.r)) if side is None else side
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


def circle_mask(shape_hw: tuple[int, ...], c: Circle, scale: float = 1.0) -> np.ndarray:
    """Boolean mask of pixel centres within scale * r of the centre."""
    return distance2_map(shape_hw, c) <= np.float32(scale * c.r) ** 2


def field_mask(h: int, w: int, c: Circle, scale: float) -> np.ndarray:
    """circle_mask as uint8 (read-only), cached: after crop_resize every image has (nearly) the same circle,
    so the circle is snapped to half pixels, far below what a mask edge can show."""
    return _cached_mask(h, w, round(c.cx * 2) / 2, round(c.cy * 2) / 2, round(c.r * 2) / 2, scale)


@functools.lru_cache(maxsize=64)
def _cached_mask(h: int, w: int, cx: float, cy: float, r: float, scale: float) -> np.ndarray:
    mask = circle_mask((h, w), Circle(cx, cy, r), scale).astype(np.uint8)
    mask.flags.writeable = False
    return mask


def apply_mask(
    img: np.ndarray, c: Circle, scale: float = 1.0, frame: tuple[float, float, float, float] | None = None, margin: float = 0.0
) -> np.ndarray:
    """Black outside scale * r: hides the rim halo and the noisy background. With `frame`
    (x0, y0, x1, y1, from crop_resize), also black outside it shrunk by `margin`: hides where a
    cut-off field's padding meets the retina, which local-contrast normalisation turns into a
    bright stripe. One pass over the image either way."""
    h, w = img.shape[:2]
    mask = field_mask(h, w, c, scale)
    if frame is not None:
        x0, y0 = max(0, math.ceil(frame[0] + margin)), max(0, math.ceil(frame[1] + margin))
        x1, y1 = min(w, math.floor(frame[2] - margin)), min(h, math.floor(frame[3] - margin))
        if (x0, y0, x1, y1) != (0, 0, w, h):
            mask = mask.copy()  # a quarter of the image's bytes, instead of a copy of the image
            mask[:y0] = 0
            mask[y1:] = 0
            mask[:, :x0] = 0
            mask[:, x1:] = 0
    return cv2.bitwise_and(img, img, mask=mask)


def crop_resize(img: np.ndarray, c: Circle, size: int) -> tuple[np.ndarray, Circle, tuple[float, float, float, float]]:
    """The size x size square around the circle (black where the field is cut off).

    Returns the image, the circle in its pixels and the original frame's box (x0, y0, x1, y1)
    in its pixels, so callers can blank what lies outside the photo.
    """
    side = max(1, round(2 * c.r))
    k = side // size
    if k >= 2:
        side = -(-side // k) * k  # a whole multiple of the shrink factor: resize's fast exact box path
    crop, cc = square_crop(img, c, side)
    f = size / side
    ox, oy = c.cx - cc.cx, c.cy - cc.cy  # crop origin in img pixels
    box = (-ox * f, -oy * f, (img.shape[1] - ox) * f, (img.shape[0] - oy) * f)
    return resize(crop, size), cc.scaled(f), box


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """size x size, anti-aliased. A whole-number shrink k >= 2 first averages k x k boxes (OpenCV's
    exact-ratio area path, far cheaper than area averaging at other ratios); what is left, under 2x
    after a DCT-scaled decode, is bilinear, as clean there and cheaper than area averaging.
    Bicubic to enlarge; untouched when already there. The one resize of shard, train and predict."""
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    k = min(h, w) // size
    if k >= 2 and h % k == 0 and w % k == 0:
        img = cv2.resize(img, (w // k, h // k), interpolation=cv2.INTER_AREA)
    if img.shape[0] < size or img.shape[1] < size:
        interp = cv2.INTER_CUBIC
    else:
        interp = cv2.INTER_AREA if min(img.shape[:2]) >= 2 * size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


# --- colour normalisation ----------------------------------------------------------


def graham(img: np.ndarray, r: float) -> np.ndarray:
    """Ben Graham's local average colour subtraction: 4*img - 4*blur(img, r/30) + 128.

    Removes illumination and pigmentation differences between cameras and eyes
    while keeping vessels and lesions. The wide blur runs at 1/d resolution, d a power
    of two (visually identical, d^2 times fewer pixels to blur): each halving of even sides is
    bilinear, which there averages 2x2 boxes exactly at a fraction of the cost of OpenCV's area
    resize (kept for odd sides). The sigma is corrected for the smoothing that the down- and up-sampling add
    (box (d^2-1)/12, linear (d^2-1)/6).
    """
    sigma = r / 30
    h, w = img.shape[:2]
    small = img
    for _ in range(max(0, int(math.log2(max(sigma / 2, 1))))):  # keeps the reduced sigma >= ~2 px
        even = small.shape[0] % 2 == 0 and small.shape[1] % 2 == 0  # else bilinear would skip pixels
        interp = cv2.INTER_LINEAR if even else cv2.INTER_AREA
        small = cv2.resize(small, (max(1, small.shape[1] // 2), max(1, small.shape[0] // 2)), interpolation=interp)
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


# --- measures ----------------------------------------------------------------------


def field_measures(img: np.ndarray, c: Circle) -> dict[str, float]:
    """Brightness, contrast and sharpness of the field, for filtering and reports.

    Sharpness is measured on the square inscribed in 0.9 r, so the rim's step edge (and the
    padding edge of most cut-off fields) does not count as detail, at 40% of the pixels.
    Variances come from sums and sums of squares (cv2.mean, cv2.norm), cheaper than
    cv2.meanStdDev on these types.
    """
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    field = field_mask(gray.shape[0], gray.shape[1], c, 1.0)
    brightness, contrast = _mean_std(gray, field)
    half = 0.9 * c.r / math.sqrt(2)
    x0, y0 = max(0, round(c.cx - half)), max(0, round(c.cy - half))
    centre = gray[y0 : max(y0 + 3, round(c.cy + half) + 1), x0 : max(x0 + 3, round(c.cx + half) + 1)]
    _, lap_std = _mean_std(cv2.Laplacian(centre, cv2.CV_16S))  # exact in int16: |lap| <= 1020
    return {
        "brightness": round(brightness, 3),
        "contrast": round(contrast, 3),
        "sharpness": round(lap_std**2, 3),
    }


def _mean_std(values: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Mean and (population) standard deviation of a one-channel image, under an optional mask."""
    n = values.size if mask is None else cv2.countNonZero(mask)
    if n == 0:
        return 0.0, 0.0
    mean = cv2.mean(values, mask=mask)[0]
    square = cv2.norm(values, cv2.NORM_L2SQR, mask=mask) / n
    return float(mean), math.sqrt(max(square - mean * mean, 0.0))
