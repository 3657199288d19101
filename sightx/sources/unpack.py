"""A zip member's stored bytes -> its contents, checked: the one inflating step of every zip source.

Members are inflated with libdeflate (the `deflate` package), in one call into a buffer of exactly
the size the central directory declares: faster than zlib on JPEG data (docs/guides/sources.md), and a
member can never expand past what was declared (a lying header is a `corrupt-member`, not a
memory blow-up). Both it and zlib release the GIL, so a reading thread overlaps a decoding one.
`deflate` is imported on the first inflate, not with the module: listing an archive (sightx-doctor,
before anything is installed) never inflates an image.
"""

from __future__ import annotations

import zipfile

from sightx.errors import Rejection

INFLATABLE = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def unpack(info: zipfile.ZipInfo, stored: bytes) -> bytes:
    """The member `info` from its `stored` bytes (stored or deflated); raise `corrupt-member` when
    they are short, do not inflate to the declared size, or fail the CRC-32."""
    import deflate

    if len(stored) != info.compress_size:
        raise Rejection("corrupt-member", f"truncated: {len(stored)} of {info.compress_size} bytes")
    if info.compress_type == zipfile.ZIP_STORED:
        data = stored
    else:
        try:
            data = bytes(deflate.deflate_decompress(stored, info.file_size)) if info.file_size else b""
        except deflate.DeflateError:
            raise Rejection("corrupt-member", f"deflate data does not inflate to the declared {info.file_size} bytes") from None
    if len(data) != info.file_size or deflate.crc32(data) != info.CRC:
        raise Rejection("corrupt-member", f"bad CRC-32 or size for {info.filename}")
    return data
