"""JPEG decode (at a reduced DCT scale) and encode, on bytes only.

Decoding at k/8 scale inside libjpeg-turbo skips most of the inverse DCT work,
so a 12 MP photo that will end up at 512 px costs a fraction of a full decode.
"""

from __future__ import annotations

import numpy as np
import simplejpeg

from sightx.errors import Rejection
from sightx.image import limits

JPEG_SOI = b"\xff\xd8\xff"
_JPEG_EOI = b"\xff\xd9"


class CodecError(Rejection, ValueError):
    """Undecodable input; reason is one of empty-file, not-jpeg, truncated, decode-error, too-large,
    too-many-scans, too-few-bytes. Details are SightX's own words, never libjpeg's internals."""


# What libjpeg-turbo turns into RGB as a shard stores it; CMYK and YCCK photos go through Pillow.
PLAIN_COLORSPACES = ("YCbCr", "Gray", "RGB")


def read_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header alone, so huge images can be refused undecoded."""
    width, height, _ = read_header(data)
    return width, height


def read_header(data: bytes) -> tuple[int, int, str]:
    """(width, height, colour space as libjpeg names it) from the header alone."""
    if len(data) == 0:
        raise CodecError("empty-file")
    if not data.startswith(JPEG_SOI):
        raise CodecError("not-jpeg", f"starts with {bytes(data[:4])!r}")
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        raise CodecError("decode-error", "the JPEG header cannot be read") from None
    return width, height, colorspace


def check_budget(data: bytes, width: int, height: int) -> None:
    """The decoder limits a JPEG's bytes can be checked against before decoding (sightx.image.limits):
    at most MAX_SCANS scans, at least MIN_BYTES_PER_MEGAPIXEL for the pixels its header declares."""
    try:
        limits.check_scans(data)
        limits.check_bytes("JPEG", width, height, len(data))
    except Rejection as e:
        raise CodecError(e.reason, e.detail) from None


def decode(data: bytes, min_size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """RGB uint8 image at the smallest k/8 scale keeping (width, height) >= min_size.

    Returns the image and its scale relative to the header size. Truncated files
    are refused rather than returned with a grey lower part, and so is a file over the decoder
    limits (`check_budget`), before it is decoded.
    """
    _, height = _checked_size(data)
    min_w, min_h = min_size if min_size is not None else (0, 0)
    img = _decode(data, "RGB", min_w, min_h)
    return img, img.shape[0] / height


def verify(data: bytes) -> None:
    """Check a JPEG that another decoder will read (Pillow, for CMYK and YCCK photos) as `decode`
    checks its own: refused where data is missing (Pillow would fill it in grey), corrupt or over
    the decoder limits. Decoded by libjpeg at 1/8 scale, in its own colour space, and dropped."""
    _checked_size(data)
    _, _, colorspace = read_header(data)
    _decode(data, "CMYK" if colorspace in ("CMYK", "YCCK") else "RGB", 1, 1)


def _checked_size(data: bytes) -> tuple[int, int]:
    width, height = read_size(data)
    if not data.rstrip(b"\x00").endswith(_JPEG_EOI):
        raise CodecError("truncated", "no end-of-image marker")
    check_budget(data, width, height)
    return width, height


def _decode(data: bytes, colorspace: str, min_w: int, min_h: int) -> np.ndarray:
    try:
        # strict: libjpeg warnings (e.g. premature end of data) raise instead of padding grey.
        return simplejpeg.decode_jpeg(data, colorspace=colorspace, min_width=min_w, min_height=min_h, strict=True)
    except ValueError as e:
        if "premature end" in str(e).lower():
            raise CodecError("truncated", "the JPEG data ends early") from None
    # Other warnings (e.g. extraneous bytes before a marker) are common in camera archives
    # and harmless: keep the image if libjpeg can still decode it.
    try:
        return simplejpeg.decode_jpeg(data, colorspace=colorspace, min_width=min_w, min_height=min_h, strict=False)
    except ValueError:
        raise CodecError("decode-error", "the JPEG data is corrupt") from None


CHROMA = ("420", "444")


def encode(img: np.ndarray, quality: int = 95, chroma: str = "420") -> bytes:
    """RGB uint8 HxWx3 -> JPEG. Chroma 420 (every common encoder's default) stores colour at half
    resolution; 444 keeps it at full resolution, for more bytes and encode time (docs/guides/sharding.md: chroma)."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected uint8 HxWx3, got {img.dtype} {img.shape}")
    if chroma not in CHROMA:
        raise ValueError(f"chroma must be one of {CHROMA}, got {chroma!r}")
    return simplejpeg.encode_jpeg(np.ascontiguousarray(img), quality=quality, colorspace="RGB", colorsubsampling=chroma)
