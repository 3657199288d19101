"""Photos as people send them (JPEG, PNG, TIFF; greyscale, CMYK, EXIF-rotated) -> pixels to preprocess.

A JPEG in colour or greyscale is decoded exactly as sightx-shard decodes it, at a reduced DCT scale
and turned upright by its EXIF orientation, so grading a raw photo matches grading its shard.
Anything else (PNG, TIFF, CMYK) is decoded by Pillow, turned upright the same way and converted to
RGB. Sizes are checked from the header first: a header claiming a huge image is refused without
decoding it.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from sightx.errors import Rejection
from sightx.image import formats, orientation
from sightx.image.codec import JPEG_SOI, PLAIN_COLORSPACES, read_header
from sightx.image.preprocess import (
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
        width, height, colorspace = read_header(data)
        check_size(width, height, opts)
        if colorspace in PLAIN_COLORSPACES:
            return decode_bytes(data, opts)
    elif kind == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        check_size(int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"), opts)
    return _decode_with_pillow(data, opts)


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


def _orientation(img: Image.Image) -> int:
    try:
        turn = img.getexif().get(_ORIENTATION, orientation.UPRIGHT)
    except Exception:  # a broken EXIF block does not make the photo unreadable
        return orientation.UPRIGHT
    return turn if isinstance(turn, int) and 1 <= turn <= 8 else orientation.UPRIGHT


def _decode_with_pillow(data: bytes, opts: PreprocessOptions) -> Decoded:
    img = _open(data)
    check_size(*img.size, opts)
    turn = _orientation(img)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
            rgb = np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = "truncated" if "truncated" in str(e).lower() else "decode-error"
        raise Rejection(reason, str(e)) from None
    return decoded_array(orientation.upright(rgb, turn), opts, turn)


def preprocess_input(data: bytes, name: str, opts: PreprocessOptions) -> Processed:
    """A dataset input, routed by its name as the shards route it: `.png`/`.tif(f)` through Pillow
    (at full size), everything else as a JPEG (a misnamed PNG stays the `not-jpeg` rejection)."""
    if formats.decodes_with_pillow(name):
        return preprocess_decoded(decode_photo(data, opts), opts)
    return preprocess_bytes(data, opts)
