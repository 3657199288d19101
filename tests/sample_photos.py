"""Photos for the grading and serving tests: the same photo in other formats, hostile headers, a photo with no field."""

from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
from PIL import Image


def rgb_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def encode(img: np.ndarray | Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(buf, format=fmt, **kw)
    return buf.getvalue()


def variants(jpeg: bytes) -> dict[str, bytes]:
    """The same photo as PNG, TIFF, CMYK JPEG, greyscale JPEG, and stored rotated with an EXIF tag that turns it back."""
    rgb = rgb_of(jpeg)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees anticlockwise: viewers rotate it clockwise
    return {
        "png": encode(rgb, "PNG"),
        "tiff": encode(rgb, "TIFF", compression="tiff_lzw"),
        "cmyk": encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95),
        "grey": encode(Image.fromarray(rgb).convert("L"), "JPEG", quality=95),
        "exif-rotated": encode(np.ascontiguousarray(np.rot90(rgb)), "JPEG", quality=95, exif=exif.tobytes()),
    }


def huge_jpeg_header(jpeg: bytes, side: int = 60000) -> bytes:
    """A real JPEG whose frame header claims side x side pixels."""
    i = jpeg.index(b"\xff\xc0")
    return jpeg[: i + 5] + side.to_bytes(2, "big") * 2 + jpeg[i + 9 :]


def huge_png_header(side: int = 60000) -> bytes:
    """A PNG signature and IHDR chunk (valid CRC) claiming side x side RGB pixels, and no pixels."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def no_field_photo() -> bytes:
    """A readable photo with no circular field in it: a smooth reddish gradient over the whole frame."""
    x = np.linspace(60, 200, 640, dtype=np.float32)
    img = np.stack([np.tile(x, (480, 1)), np.full((480, 640), 70.0), np.full((480, 640), 40.0)], -1)
    return encode(img.astype(np.uint8), "JPEG", quality=90)


@functools.lru_cache(maxsize=4)
def speckled_png(width: int, height: int) -> bytes:
    """The bench's near-bomb (sightx.bench.serve_hostile.speckled_png: black with a sparse speckle, so
    it holds the bytes a real photo of its size must and is decoded at full cost), made once per size."""
    from sightx.bench.serve_hostile import speckled_png as make

    return make(width, height)
