"""The budget of one photo: what a decoder may be asked to do, decided from its bytes before any decode.

A photo's cost is set by what its header claims, not by its size on disk, so each limit is checked
before a decoder sees the data, on every path (shard, predict, explore, serve):

- pixels (`too-large`): a header claiming more than a limit is refused undecoded. The limit is a
  parameter: `PreprocessOptions.max_pixels` (60 MP) for data sets; a server takes a lower one,
  `SERVE_MAX_PIXELS` (25 MP: fundus cameras stay under ~25 MP), through `photos.check_photo`.
- scans (`too-many-scans`): a progressive JPEG is decoded in passes, one per scan (SOS marker), and
  each pass walks every coefficient of the image: about 4.4 ms a scan at 12 MP, whatever the scan
  holds, so 5,000 empty scans in 561 KB cost 22 s. Encoders write 1 scan (baseline; 3-4 with
  non-interleaved components), 10 (libjpeg's progressive script), up to ~20 (mozjpeg's optimised
  ones); `MAX_SCANS` = 64 is three times the most any camera or encoder writes and bounds the
  passes to well under a second even at the pixel limit.
- bytes per pixel (`too-few-bytes`): a file far smaller than any real photo of the size its header
  declares is a decompression bomb or a header without its data, which a decoder would fill in with
  grey. A Huffman-coded JPEG spends at least one bit on every 8x8 block of its full-resolution
  component, even a black frame: at least 1,953 bytes per megapixel; `MIN_BYTES_PER_MEGAPIXEL` asks
  for 1,000 of a JPEG. Deflate (PNG, TIFF) shrinks at most 1032:1, so a lossless blank frame can go
  below that, but a photo's field has sensor noise and texture: real PNG/TIFF photos hold
  hundreds of kilobytes per megapixel, and 10,000 is asked of them.

Truncated data is refused by the decoders themselves (`codec.decode`: libjpeg's warnings raise;
`photos`: CMYK JPEGs are checked by libjpeg before Pillow, and Pillow never loads truncated data).
"""

from __future__ import annotations

import re

from sightx.errors import Rejection

MAX_SCANS = 64
SERVE_MAX_PIXELS = 25_000_000
MIN_BYTES_PER_MEGAPIXEL = {"JPEG": 1_000, "PNG": 10_000, "TIFF": 10_000}

_SOS, _EOI = 0xDA, 0xD9
_STANDALONE = {0x01, 0xD8, *range(0xD0, 0xD8)}  # markers without a length: TEM, SOI, RST0-7
# The next marker inside entropy-coded data: 0xFF followed by anything but a stuffed 0x00, a
# restart marker (RST0-7, part of the data) or another 0xFF (fill).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def count_scans(data: bytes, stop_after: int | None = None) -> int:
    """How many scans (SOS markers) a JPEG holds, by walking its marker segments: a segment is
    skipped by its length (an EXIF thumbnail's scans are not counted) and entropy-coded data up to
    the next marker. Stops counting past `stop_after`; stops at EOI or where the structure breaks
    (the decoder reports that)."""
    scans, pos, end = 0, 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return scans
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == _EOI:
            return scans
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == _SOS:
            scans += 1
            if stop_after is not None and scans > stop_after:
                return scans
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                return scans
            pos = found.start()
    return scans


def check_scans(data: bytes, limit: int = MAX_SCANS) -> None:
    """Refuse a JPEG with more than `limit` scans (`too-many-scans`), before it is decoded."""
    scans = count_scans(data, stop_after=limit)
    if scans > limit:
        raise Rejection("too-many-scans", f"more than {limit} progressive scans (cameras write at most about 20)")


def check_bytes(kind: str, width: int, height: int, nbytes: int) -> None:
    """Refuse a file of `kind` (JPEG, PNG, TIFF) far smaller than any real photo of width x height
    (`too-few-bytes`), before it is decoded."""
    need = MIN_BYTES_PER_MEGAPIXEL[kind] * width * height // 1_000_000
    if nbytes < need:
        raise Rejection(
            "too-few-bytes",
            f"{nbytes:,} bytes for {width}x{height} pixels; a real {kind} photo of that size holds at least {need:,}",
        )


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse a header claiming more than `max_pixels` (`too-large`), before anything is decoded."""
    if width * height > max_pixels:
        raise Rejection("too-large", f"{width}x{height} exceeds {max_pixels} pixels")
