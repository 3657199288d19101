"""The one preprocessing path: raw fundus JPEG bytes -> normalised square JPEG.

Shard building, prediction, exploration and the benchmark all call
preprocess_bytes, so the model always sees images made the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from sightx.errors import Rejection
from sightx.image import codec, fov, fundus, gradability, orientation

_FOV_OF_MIN_SIDE = 0.9  # typical field diameter / short image side, to pick the decode scale
# A field this much smaller than the output is enlarged rather than decoded again at the next
# k/8 scale: a second decode costs as much as the first, to win under 3% of resolution.
_UPSCALE_TOLERANCE = 0.03


# Integer options: (lowest, highest). The output side is that of sightx-shard --size, down to the
# smallest input a checkpoint accepts.
_INTEGERS = {"size": (16, 4096), "quality": (1, 100), "min_side": (1, 1 << 20), "max_pixels": (1, 1 << 40)}
_FRACTIONS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "mask_scale": ("(0, 1]", lambda v: 0 < v <= 1),
    "min_radius_frac": ("[0, 1)", lambda v: 0 <= v < 1),
}


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
        """Every field by type and range: options also arrive from files (a checkpoint, a manifest),
        and an edited one must be refused here, not fail on every photo or allocate without bound."""
        for name, (low, high) in _INTEGERS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer from {low} to {high:,}, got {value!r}")
        for name, (interval, inside) in _FRACTIONS.items():
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or not inside(value):
                raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
        if not isinstance(self.normalize, str) or self.normalize not in fundus.NORMALIZERS:
            raise ValueError(f"normalize must be one of {fundus.NORMALIZERS}, got {self.normalize!r}")
        if not isinstance(self.chroma, str) or self.chroma not in codec.CHROMA:
            raise ValueError(f"chroma must be one of {codec.CHROMA}, got {self.chroma!r}")

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


@dataclass
class Decoded:
    """A photo decoded for preprocessing: the pixels, upright, their scale to the original, the
    original's upright size and the EXIF orientation that turned it (1: stored upright).

    `jpeg` is the source for a finer second decode; None for pixels decoded elsewhere (PNG, TIFF or
    CMYK photos, decoded by Pillow at full size, so they never need one).
    """

    image: np.ndarray
    scale: float
    size: tuple[int, int]  # original (width, height), upright
    jpeg: bytes | None = None
    orientation: int = orientation.UPRIGHT


def check_size(width: int, height: int, opts: PreprocessOptions) -> None:
    """Refuse from the header alone, before anything is decoded."""
    if width * height > opts.max_pixels:
        raise Rejected("too-large", f"{width}x{height} exceeds {opts.max_pixels} pixels")
    if min(width, height) < opts.min_side:
        raise Rejected("too-small", f"{width}x{height} has a side below {opts.min_side}")


def decode_target(size: int) -> tuple[int, int]:
    """The smallest decoded size that keeps a typical field of view at least `size` across."""
    side = math.ceil(size / _FOV_OF_MIN_SIDE)
    return side, side


def decode_bytes(data: bytes, opts: PreprocessOptions) -> Decoded:
    """Header checks, then a decode at the smallest DCT scale that keeps the field >= the output,
    turned upright by the photo's EXIF orientation."""
    width, height = _read_size(data)
    check_size(width, height, opts)
    turn = orientation.read(data)
    if orientation.swaps_sides(turn):
        width, height = height, width
    img, scale = _decode(data, decode_target(opts.size), (width, height), turn)
    return Decoded(img, scale, (width, height), data, turn)


def decoded_array(img: np.ndarray, opts: PreprocessOptions, turn: int = orientation.UPRIGHT) -> Decoded:
    """An RGB uint8 array decoded (and turned upright by `turn`) elsewhere, at full size."""
    height, width = img.shape[:2]
    check_size(width, height, opts)
    return Decoded(img, 1.0, (width, height), orientation=turn)


def preprocess_bytes(data: bytes, opts: PreprocessOptions) -> Processed:
    """Decode, find the field, crop square, resize, normalise, mask, encode; or raise Rejected."""
    return preprocess_decoded(decode_bytes(data, opts), opts)


def preprocess_decoded(decoded: Decoded, opts: PreprocessOptions, *, centre_fallback: bool = False) -> Processed:
    """Everything after decoding. With `centre_fallback`, a photo whose field is not found (or is
    implausibly small) is processed as if the field were the circle inscribed in the frame, and
    info["fov_fallback"] names the reason: a grader must grade every readable photo, a shard must not."""
    img, circle, scale, fallback = _locate(decoded, opts, centre_fallback)
    width, height = decoded.size
    small, c, frame = fundus.crop_resize(img, circle, opts.size)
    metrics = fundus.field_measures(small, c)
    out = fundus.normalize(small, opts.normalize, opts.size / 2)
    if opts.normalize == "graham":
        out = fundus.apply_mask(out, c, opts.mask_scale, frame, opts.size / 60)  # margin: the blur's reach, r/30
    else:
        out = fundus.apply_mask(out, c, 1.0)

    orig = circle.scaled(1 / scale)
    fov_fraction = fov.visible_fraction((height, width), orig)
    info = {
        "orig_size": [width, height],
        "decode_scale": round(scale, 3),
        "circle": {"cx": round(orig.cx, 1), "cy": round(orig.cy, 1), "r": round(orig.r, 1)},
        "fov_fraction": round(fov_fraction, 3),
        **metrics,
        "gradability": gradability.assess(*_analysis_field(img, circle, small, c, frame, opts.size), fov_fraction, found=not fallback),
    }
    if decoded.orientation != orientation.UPRIGHT:
        info["exif_orientation"] = decoded.orientation
    if fallback:
        info["fov_fallback"] = fallback
    return Processed(jpeg=codec.encode(out, opts.quality, opts.chroma), image=out, info=info)


def _locate(decoded: Decoded, opts: PreprocessOptions, centre_fallback: bool) -> tuple[np.ndarray, fov.Circle, float, str]:
    """The pixels to crop (decoded again, finer, when the field is smaller than assumed), the field in
    them, their scale to the original and the fallback reason ("" when the field was found)."""
    img, scale, (width, height) = decoded.image, decoded.scale, decoded.size
    field = _field(img, opts)
    fallback = ""
    if isinstance(field, Rejected):
        if not centre_fallback:
            raise field
        fallback = field.reason
        h, w = img.shape[:2]
        circle = fov.Circle((w - 1) / 2, (h - 1) / 2, min(w, h) / 2)
    else:
        circle = field
        if 2 * circle.r < (1 - _UPSCALE_TOLERANCE) * opts.size and scale < 1 and decoded.jpeg is not None:
            # Field smaller than assumed: decode finer so the crop is never noticeably upsampled.
            need = opts.size * scale / (2 * circle.r)
            img, new_scale = _decode(decoded.jpeg, (math.ceil(width * need), math.ceil(height * need)), decoded.size, decoded.orientation)
            circle = circle.scaled(new_scale / scale)
            scale = new_scale
    return img, circle, scale, fallback


def analysis_field(decoded: Decoded, opts: PreprocessOptions) -> tuple[np.ndarray, fov.Circle, tuple[float, float, float, float], float]:
    """What the gradability score reads of a photo preprocessed with `opts`: the field at
    gradability.ANALYSIS_SIZE, its circle and the photo's frame there, the field's share inside the
    photo. For fitting and measuring the score (tools/fit_gradability.py, sightx-bench real)."""
    img, circle, scale, _ = _locate(decoded, opts, centre_fallback=False)
    small, c, frame = fundus.crop_resize(img, circle, opts.size)
    width, height = decoded.size
    return (*_analysis_field(img, circle, small, c, frame, opts.size), fov.visible_fraction((height, width), circle.scaled(1 / scale)))


def _analysis_field(
    img: np.ndarray, circle: fov.Circle, small: np.ndarray, c: fov.Circle, frame: tuple[float, float, float, float], size: int
) -> tuple[np.ndarray, fov.Circle, tuple[float, float, float, float]]:
    """The field at gradability.ANALYSIS_SIZE: the output itself at that size, the output halved
    (or area-shrunk) above it, and below it a second crop of the decoded photo, which holds more."""
    target = gradability.ANALYSIS_SIZE
    if size == target:
        return small, c, frame
    if size < target:
        return fundus.crop_resize(img, circle, target)
    f = target / size
    return fundus.resize(small, target), c.scaled(f), (frame[0] * f, frame[1] * f, frame[2] * f, frame[3] * f)


def _field(img: np.ndarray, opts: PreprocessOptions) -> fov.Circle | Rejected:
    """The field of view, or the rejection that says why there is no usable one."""
    circle = fov.find_fov(img)
    if circle is None:
        return Rejected("no-fov", "no circular field of view found")
    if circle.r < opts.min_radius_frac * min(img.shape[:2]):
        return Rejected("fov-too-small", f"radius {circle.r:.1f} px in a {img.shape[1]}x{img.shape[0]} decode")
    return circle


def _read_size(data: bytes) -> tuple[int, int]:
    try:
        return codec.read_size(data)
    except codec.CodecError as e:
        raise Rejected(e.reason, e.detail) from e


def _decode(data: bytes, min_size: tuple[int, int], size: tuple[int, int], turn: int) -> tuple[np.ndarray, float]:
    """Decode as stored, at least `min_size` (width, height) once upright, then turn upright; the
    scale is the upright height's to the upright photo's `size`, whichever way it was stored."""
    stored_min = (min_size[1], min_size[0]) if orientation.swaps_sides(turn) else min_size
    try:
        img, _ = codec.decode(data, stored_min)
    except codec.CodecError as e:
        raise Rejected(e.reason, e.detail) from e
    img = orientation.upright(img, turn)
    return img, img.shape[0] / size[1]
