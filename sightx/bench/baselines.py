"""What a user would write instead of SightX, and the decode-only floor, as per-file functions.

Each takes one path (so only a short string crosses to the worker) and returns the output JPEG.
They make the same kind of output as the engine: a size x size, Graham-normalised, masked q95
JPEG. They follow the widely copied Kaggle recipe: full decode, crop to the bounding box of
pixels brighter than 7, square, resize, 4*img - 4*blur(img, r/30) + 128, circle mask at 0.9 r.
Encoders keep their defaults (4:2:0 chroma), as users do and as SightX does by default.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from sightx.image import codec
from sightx.image.preprocess import decode_target  # the floor must decode at exactly the engine's scale

_TOL = 7  # the Kaggle kernels' crop_image_from_gray threshold
_MASK = 0.9  # Graham's circle mask radius


@dataclass(frozen=True)
class Recipe:
    """Output options shared by every engine; picklable."""

    size: int = 512
    quality: int = 95


def naive_pil(path: str, recipe: Recipe) -> bytes:
    """PIL throughout: full decode, bbox crop, LANCZOS pad-resize, GaussianBlur, numpy arithmetic."""
    img = Image.open(path).convert("RGB")
    box = img.convert("L").point(lambda v: 255 if v > _TOL else 0).getbbox()
    if box:
        img = img.crop(box)
    img = ImageOps.pad(img, (recipe.size, recipe.size), method=Image.Resampling.LANCZOS, color=(0, 0, 0))
    blur = img.filter(ImageFilter.GaussianBlur(recipe.size / 2 / 30))
    out = np.clip(4 * np.asarray(img, np.int16) - 4 * np.asarray(blur, np.int16) + 128, 0, 255).astype(np.uint8)
    mask = Image.new("L", img.size, 0)
    r = _MASK * recipe.size / 2
    c = recipe.size / 2
    ImageDraw.Draw(mask).ellipse((c - r, c - r, c + r, c + r), fill=255)
    result = Image.composite(Image.fromarray(out), Image.new("RGB", img.size), mask)
    buf = io.BytesIO()
    result.save(buf, "JPEG", quality=recipe.quality)
    return buf.getvalue()


def naive_opencv(path: str, recipe: Recipe) -> bytes:
    """The same recipe with OpenCV: full decode, bbox crop, INTER_AREA resize, cv2 Graham."""
    img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    if img is None:  # undecodable: written as nothing, as the other engines skip it
        return b""
    bright = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) > _TOL
    rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
    if rows.size:
        img = img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = img.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    img = cv2.copyMakeBorder(img, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    img = cv2.resize(img, (recipe.size, recipe.size), interpolation=cv2.INTER_AREA)
    out = cv2.addWeighted(img, 4, cv2.GaussianBlur(img, (0, 0), recipe.size / 2 / 30), -4, 128)
    mask = np.zeros(out.shape[:2], np.uint8)
    cv2.circle(mask, (recipe.size // 2, recipe.size // 2), int(_MASK * recipe.size / 2), 1, -1)
    out = cv2.bitwise_and(out, out, mask=mask)
    return cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, recipe.quality])[1].tobytes()


def decode_floor(path: str, recipe: Recipe) -> bytes:
    """Read and decode only, at the reduced DCT scale SightX picks: no pipeline can beat this."""
    codec.decode(Path(path).read_bytes(), decode_target(recipe.size))
    return b""
