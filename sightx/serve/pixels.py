"""Pixel limits for serving, from the photos' headers before anything is decoded.

A checkpoint's preprocessing refuses photos over its `max_pixels` (60 MP, sized for any archive
a shard run may meet). A server takes photos from anyone, and a 60 MP PNG of zeros is a
decompression bomb of a few hundred KB that costs seconds and hundreds of MB to decode; fundus
cameras stay under about 25 MP. So a served photo must be under `max_photo_mp` and the photos of
one request under `max_request_mp` in all (which bounds the work one request can ask for).
"""

from __future__ import annotations

from sightx.errors import Rejection
from sightx.image.photos import header
from sightx.serve.errors import Refused
from sightx.serve.uploads import Upload


def photo_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header (sightx.image.photos.header); None where the header does not
    say (grading then says why)."""
    try:
        _, width, height, _ = header(data)
    except Rejection as e:
        return (1 << 20, 1 << 20) if e.reason == "too-large" else None  # over Pillow's own hard limit: over ours
    return width, height


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
