"""Which inputs of a dataset are PNG or TIFF (APTOS, Messidor-2, some IDRiD exports), decoded by Pillow.

Neither format has JPEG's DCT, so there is no reduced-size decode: these cost a full decode per
image, which the shard summary says. Which decoder reads a file follows its name's suffix, so a
PNG misnamed `.jpeg` is still the `not-jpeg` rejection it always was. The decoding itself is
`sightx.image.photos`' (the one Pillow path, shared with grading).
"""

from __future__ import annotations

from pathlib import PurePosixPath

SUFFIXES = (".png", ".tif", ".tiff")


def decodes(name: str) -> bool:
    """Whether the input named `name` goes through Pillow rather than libjpeg-turbo."""
    return PurePosixPath(name).suffix.lower() in SUFFIXES
