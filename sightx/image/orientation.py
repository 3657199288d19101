"""EXIF orientation: which way up a JPEG is meant to be shown, read from its header, applied to pixels.

A camera or phone stores a photo as its sensor saw it and tags how to turn it (EXIF tag 0x0112,
values 1-8). Reading the tag here, from the segments before the image data, costs microseconds
and no Pillow, so the DCT-scaled decode stays the one path for every JPEG: a photo is decoded
small as stored, then turned upright (a flip or a quarter turn of the small array, exact).
"""

from __future__ import annotations

import numpy as np

UPRIGHT = 1
_TAG = 0x0112
_EXIF = b"Exif\x00\x00"
_SOS, _EOI, _APP1 = 0xDA, 0xD9, 0xE1
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length: TEM, RST0-7


def read(data: bytes) -> int:
    """The orientation (1-8) of the first EXIF block before the image data; 1 when there is none,
    or when the block is malformed (a broken tag never makes a photo unreadable)."""
    pos = 2  # after SOI
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return UPRIGHT
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (_SOS, _EOI):
            return UPRIGHT
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return UPRIGHT
        if marker == _APP1 and data[pos + 4 : pos + 10] == _EXIF:
            return _from_tiff(data[pos + 10 : pos + 2 + length])
        pos += 2 + length
    return UPRIGHT


def _from_tiff(tiff: bytes) -> int:
    """Tag 0x0112 of IFD0 in a TIFF block (EXIF's layout)."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return UPRIGHT

    def num(at: int, size: int) -> int:
        return int.from_bytes(tiff[at : at + size], order)  # type: ignore[arg-type]

    ifd = num(4, 4)
    if ifd + 2 > len(tiff):
        return UPRIGHT
    for i in range(num(ifd, 2)):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            return UPRIGHT
        if num(entry, 2) == _TAG:
            kind = num(entry + 2, 2)
            value = num(entry + 8, 2) if kind == 3 else num(entry + 8, 4) if kind == 4 else UPRIGHT  # SHORT, LONG
            return value if 1 <= value <= 8 else UPRIGHT
    return UPRIGHT


def upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """A stored HxW(xC) array turned as the tag says a viewer shows it (Pillow's exif_transpose)."""
    if orientation in (5, 6, 7, 8):
        img = np.swapaxes(img, 0, 1)  # transpose; then each is a flip of the transposed array
        flip = {5: (), 6: (1,), 7: (0, 1), 8: (0,)}[orientation]
    else:
        flip = {2: (1,), 3: (0, 1), 4: (0,)}.get(orientation, ())
    return np.ascontiguousarray(np.flip(img, flip) if flip else img)


def swaps_sides(orientation: int) -> bool:
    """Whether the upright photo's width is the stored height (a quarter turn)."""
    return orientation in (5, 6, 7, 8)
