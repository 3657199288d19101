"""Photos as people send them (JPEG, PNG, TIFF; greyscale, CMYK, EXIF-rotated) -> pixels to preprocess.

A JPEG in colour or greyscale is decoded exactly as sightx-shard decodes it, at a reduced DCT scale
and turned upright by its EXIF orientation, so grading a raw photo matches grading its shard.
Anything else (PNG, TIFF, CMYK) is decoded by Pillow, turned upright the same way and converted to
RGB. Every decoder limit (sightx.image.limits: pixels, progressive scans, bytes per pixel) is
checked from the bytes first: a photo over one is refused without decoding it.
"""

from __future__ import annotations

import dataclasses
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, UnidentifiedImageError

from sightx.errors import Rejection
from sightx.image import formats, limits, orientation
from sightx.image.codec import JPEG_SOI, PLAIN_COLORSPACES, read_header, verify
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


def check_photo(data: bytes, max_pixels: int = limits.SERVE_MAX_PIXELS) -> tuple[str, int, int]:
    """(format, width, height) of a photo within every decoder limit, decided from its bytes alone
    (nothing is decoded); else a Rejection: empty-file, not-image, decode-error (an unreadable
    header), too-large (over `max_pixels`: a server passes its own), too-many-scans, too-few-bytes."""
    kind, width, height, _ = header(data)
    limits.check_pixels(width, height, max_pixels)
    _check_budget(kind, data, width, height)
    return kind, width, height


def decode_photo(data: bytes, opts: PreprocessOptions, max_pixels: int | None = None) -> Decoded:
    """Pixels ready for `preprocess_decoded`, or a Rejection (not-image, too-large, truncated, ...).
    Every decoder limit is checked first, from the bytes (`check_photo`); `max_pixels` lowers the
    options' pixel limit (a server's)."""
    if max_pixels is not None and max_pixels < opts.max_pixels:
        opts = dataclasses.replace(opts, max_pixels=max_pixels)
    kind, width, height, colorspace = header(data)
    check_size(width, height, opts)
    _check_budget(kind, data, width, height)
    if kind == "JPEG":
        if colorspace in PLAIN_COLORSPACES:
            return decode_bytes(data, opts)
        verify(data)  # Pillow would fill missing data in grey: libjpeg, strict, refuses it first
    return _decode_with_pillow(data, kind, opts)


def header(data: bytes) -> tuple[str, int, int, str]:
    """(format, width, height, JPEG colour space or "") from the header alone; a Rejection when it
    cannot be read (too-large when Pillow itself refuses the size a TIFF claims)."""
    kind = sniff(data)
    if kind == "JPEG":
        width, height, colorspace = read_header(data)
        return kind, width, height, colorspace
    if kind == "PNG":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise Rejection("decode-error", "the PNG header cannot be read")
        return kind, int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"), ""
    width, height = _open(data, kind).size  # TIFF: Pillow reads the header, no pixels
    return kind, width, height, ""


def _check_budget(kind: str, data: bytes, width: int, height: int) -> None:
    limits.check_bytes(kind, width, height, len(data))
    if kind == "JPEG":
        limits.check_scans(data)


@contextmanager
def _quiet() -> Iterator[None]:
    """Pillow's warnings (corrupt EXIF, decompression bombs: sizes are checked by us, from the
    header) name its files in site-packages; a refusal says what matters in its own words."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _open(data: bytes, kind: str) -> Image.Image:
    """Pillow reads only the header here; pixels come on load()."""
    try:
        with _quiet():
            return Image.open(io.BytesIO(data), formats=[kind])
    except Image.DecompressionBombError:
        raise Rejection("too-large", f"the {kind} header claims more pixels than Pillow decodes") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise Rejection("decode-error", f"the {kind} header cannot be read") from None


def _orientation(img: Image.Image) -> int:
    try:
        with _quiet():
            turn = img.getexif().get(_ORIENTATION, orientation.UPRIGHT)
    except Exception:  # a broken EXIF block does not make the photo unreadable
        return orientation.UPRIGHT
    return turn if isinstance(turn, int) and 1 <= turn <= 8 else orientation.UPRIGHT


def _decode_with_pillow(data: bytes, kind: str, opts: PreprocessOptions) -> Decoded:
    img = _open(data, kind)
    check_size(*img.size, opts)
    turn = _orientation(img)
    try:
        with _quiet():
            img.load()
            rgb = np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        if "truncated" in str(e).lower():
            raise Rejection("truncated", f"the {kind} data ends early") from None
        raise Rejection("decode-error", f"the {kind} data is corrupt") from None
    return decoded_array(orientation.upright(rgb, turn), opts, turn)


def preprocess_input(data: bytes, name: str, opts: PreprocessOptions) -> Processed:
    """A dataset input, routed by its name as the shards route it: `.png`/`.tif(f)` through Pillow
    (at full size), everything else as a JPEG (a misnamed PNG stays the `not-jpeg` rejection)."""
    if formats.decodes_with_pillow(name):
        return preprocess_decoded(decode_photo(data, opts), opts)
    return preprocess_bytes(data, opts)
