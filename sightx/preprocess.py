"""The one preprocessing path: raw fundus JPEG bytes -> normalised square JPEG.

Shard building, prediction, exploration and the benchmark all call
preprocess_bytes, so the model always sees images made the same way.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from sightx import codec, fundus, pillow_codec
from sightx.errors import Rejection

_FOV_OF_MIN_SIDE = 0.9  # typical field diameter / short image side, to pick the decode scale
# A field this much smaller than the output is enlarged rather than decoded again at the next
# k/8 scale: a second decode costs a whole first one (~10 ms) to win under 3% of resolution.
_UPSCALE_TOLERANCE = 0.03


@dataclass(frozen=True)
class PreprocessOptions:
    """Everything that changes the output; saved with shards and checkpoints for replay."""

    size: int = 512
    normalize: str = "graham"
    quality: int = 95
    chroma: str = "420"
    mask_scale: float = 0.92
    min_side: int = 256
    max_pixels: int = 60_000_000
    min_radius_frac: float = 0.25

    def __post_init__(self) -> None:
        if self.normalize not in fundus.NORMALIZERS:
            raise ValueError(f"normalize must be one of {fundus.NORMALIZERS}, got {self.normalize!r}")
        if self.chroma not in codec.CHROMA:
            raise ValueError(f"chroma must be one of {codec.CHROMA}, got {self.chroma!r}")
        if self.size < 1 or not 1 <= self.quality <= 100 or not 0 < self.mask_scale <= 1:
            raise ValueError(f"invalid options {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessOptions:
        """Unknown keys are an error: silently dropping one would change the images."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown preprocess options: {sorted(unknown)}")
        return cls(**{"chroma": "444", **d})  # saved before chroma was an option: encoded 4:4:4


class Rejected(Rejection):
    """An image that cannot or should not become a training sample, with a reason code."""


@dataclass
class Processed:
    """Encoded output, the decoded-equivalent array, and per-image facts for the manifest."""

    jpeg: bytes
    image: np.ndarray
    info: dict[str, Any]


def preprocess_bytes(data: bytes, opts: PreprocessOptions, pillow: bool = False) -> Processed:
    """Decode, find the field, crop square, resize, normalise, mask, encode; or raise Rejected.
    `pillow`: a PNG or TIFF input (pillow_codec.decodes(name)), decoded at full size."""
    width, height = _read_size(data, pillow)
    if width * height > opts.max_pixels:
        raise Rejected("too-large", f"{width}x{height} exceeds {opts.max_pixels} pixels")
    if min(width, height) < opts.min_side:
        raise Rejected("too-small", f"{width}x{height} has a side below {opts.min_side}")

    side = math.ceil(opts.size / _FOV_OF_MIN_SIDE)
    img, scale = _decode(data, (side, side), pillow)
    circle = fundus.find_fov(img)
    if circle is None:
        raise Rejected("no-fov", "no circular field of view found")
    if circle.r < opts.min_radius_frac * min(img.shape[:2]):
        raise Rejected("fov-too-small", f"radius {circle.r:.1f} px in a {img.shape[1]}x{img.shape[0]} decode")
    if 2 * circle.r < (1 - _UPSCALE_TOLERANCE) * opts.size and scale < 1:
        # Field smaller than assumed: decode finer so the crop is never noticeably upsampled.
        need = opts.size * scale / (2 * circle.r)
        img, new_scale = _decode(data, (math.ceil(width * need), math.ceil(height * need)))
        circle = circle.scaled(new_scale / scale)
        scale = new_scale

    small, c, frame = fundus.crop_resize(img, circle, opts.size)
    metrics = fundus.quality_metrics(small, c)
    out = fundus.normalize(small, opts.normalize, opts.size / 2)
    if opts.normalize == "graham":
        out = fundus.apply_mask(out, c, opts.mask_scale, frame, opts.size / 60)  # margin: the blur's reach, r/30
    else:
        out = fundus.apply_mask(out, c, 1.0)

    orig = circle.scaled(1 / scale)
    info = {
        "orig_size": [width, height],
        "decode_scale": round(scale, 3),
        "circle": {"cx": round(orig.cx, 1), "cy": round(orig.cy, 1), "r": round(orig.r, 1)},
        "fov_fraction": round(fundus.visible_fraction((height, width), orig), 3),
        **metrics,
    }
    return Processed(jpeg=codec.encode(out, opts.quality, opts.chroma), image=out, info=info)


def _read_size(data: bytes, pillow: bool) -> tuple[int, int]:
    try:
        return pillow_codec.read_size(data) if pillow else codec.read_size(data)
    except codec.CodecError as e:
        raise Rejected(e.reason, e.detail) from e


def _decode(data: bytes, min_size: tuple[int, int], pillow: bool = False) -> tuple[np.ndarray, float]:
    try:
        return pillow_codec.decode(data) if pillow else codec.decode(data, min_size)
    except codec.CodecError as e:
        raise Rejected(e.reason, e.detail) from e
