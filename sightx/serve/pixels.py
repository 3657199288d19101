"""Pixel limits for serving, from the photos' headers before anything is decoded.

A checkpoint's preprocessing refuses photos over its `max_pixels` (60 MP, sized for any archive
a shard run may meet). A server takes photos from anyone, and a 60 MP PNG of zeros is a
decompression bomb of a few hundred KB that costs seconds and hundreds of MB to decode; fundus
cameras stay under about 25 MP. So a served photo must be under `max_photo_mp` and the photos of
one request under `max_request_mp` in all (which bounds the work one request can ask for).
"""

from __future__ import annotations

import io
import warnings

from PIL import Image

from sightx.errors import Rejection
from sightx.image.codec import read_size
from sightx.serve.errors import Refused
from sightx.serve.uploads import Upload

_JPEG, _PNG, _TIFF = b"\xff\xd8", b"\x89PNG\r\n\x1a\n", (b"II*\x00", b"MM\x00*")


def photo_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header; None where the header does not say (grading then says why)."""
    try:
        if data.startswith(_JPEG):
            return read_size(data)
        if data.startswith(_PNG) or data.startswith(_TIFF):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data), formats=["PNG", "TIFF"]) as img:
                    return img.size
    except Image.DecompressionBombError:
        return 1 << 20, 1 << 20  # over Pillow's own hard limit: over ours
    except (Rejection, OSError, ValueError, SyntaxError, Image.UnidentifiedImageError):
        return None
    return None


def check(uploads: list[Upload], max_photo_mp: float, max_request_mp: float) -> None:
    """Refuse a photo over max_photo_mp (422) or a request whose photos pass max_request_mp in all (413)."""
    total = 0
    for upload in uploads:
        size = photo_size(upload.data)
        if size is None:
            continue
        w, h = size
        if w * h > max_photo_mp * 1e6:
            raise Refused(422, f"{upload.name}: too-large: {w}x{h} is {w * h / 1e6:.1f} MP, over the {max_photo_mp:g} MP serving limit")
        total += w * h
    if total > max_request_mp * 1e6:
        raise Refused(413, f"the photos of this request have {total / 1e6:.0f} MP in all, over the {max_request_mp:g} MP limit per request")
