"""Photos as people send them (JPEG, PNG, TIFF; greyscale, CMYK, EXIF-rotated) -> pixels to preprocess.

A plain JPEG (RGB or greyscale, upright) is decoded exactly as sightx-shard decodes it, at a reduced
DCT scale, so grading a raw photo matches grading its shard. Anything else is decoded by Pillow,
turned upright by its EXIF orientation and converted to RGB. Sizes are checked from the header first:
a header claiming a huge image is refused without decoding it.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sightx import pillow_codec
from sightx.codec import JPEG_SOI, read_size
from sightx.errors import Rejection
from sightx.preprocess import (
    Decoded,
    PreprocessOptions,
    Processed,
    check_size,
    decode_bytes,
    decoded_array,
    preprocess_bytes,
    preprocess_decoded,
)

_PNG = b"\x89PNG\r\n\x1a\n"
_TIFF = (b"II*\x00", b"MM\x00*")
_ORIENTATION = 0x0112


def sniff(data: bytes) -> str:
    """The format from the first bytes, whatever the file name or content type claims."""
    if not data:
        raise Rejection("empty-file")
    if data.startswith(JPEG_SOI):
        return "JPEG"
    if data.startswith(_PNG):
        return "PNG"
    if data.startswith(_TIFF):
        return "TIFF"
    raise Rejection("not-image", f"not a JPEG, PNG or TIFF (starts with {bytes(data[:4])!r})")


def decode_photo(data: bytes, opts: PreprocessOptions) -> Decoded:
    """Pixels ready for `preprocess_decoded`, or a Rejection (not-image, too-large, truncated, ...)."""
    kind = sniff(data)
    if kind == "JPEG":
        check_size(*read_size(data), opts)
        if _is_plain_jpeg(data):
            return decode_bytes(data, opts)
    elif kind == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        check_size(int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"), opts)
    return decoded_array(_decode_with_pillow(data, opts), opts)


def _open(data: bytes) -> Image.Image:
    """Pillow reads only the header here; pixels come on load()."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # sizes are checked by us, from the header
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise Rejection("too-large", str(e)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise Rejection("decode-error", str(e)) from None


def _is_plain_jpeg(data: bytes) -> bool:
    """RGB or greyscale and upright: what libjpeg-turbo decodes as the shards did."""
    img = _open(data)
    if img.mode not in ("RGB", "L"):
        return False
    try:
        orientation = img.getexif().get(_ORIENTATION, 1)
    except Exception:  # a broken EXIF block does not make the photo unreadable
        orientation = 1
    return orientation in (0, 1)


def _decode_with_pillow(data: bytes, opts: PreprocessOptions) -> np.ndarray:
    img = _open(data)
    check_size(*img.size, opts)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
            upright = ImageOps.exif_transpose(img)
            rgb = upright.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = "truncated" if "truncated" in str(e).lower() else "decode-error"
        raise Rejection(reason, str(e)) from None
    check_size(*rgb.size, opts)
    return np.asarray(rgb)


def preprocess_input(data: bytes, name: str, opts: PreprocessOptions) -> Processed:
    """A dataset input, routed by its name as the shards route it: `.png`/`.tif(f)` through Pillow
    (at full size), everything else as a JPEG (a misnamed PNG stays the `not-jpeg` rejection)."""
    if pillow_codec.decodes(name):
        return preprocess_decoded(decode_photo(data, opts), opts)
    return preprocess_bytes(data, opts)
