"""Image file formats by name: the one list of suffixes SightX reads, and which decoder each takes.

JPEG goes through libjpeg-turbo with a reduced-size (DCT-scaled) decode; PNG and TIFF (APTOS,
Messidor-2, some IDRiD exports) through Pillow, a full decode per image, which the shard summary
says. Which decoder reads a file follows its name's suffix, so a PNG misnamed `.jpeg` is still the
`not-jpeg` rejection it always was. Standard library only: the doctor lists archives with it.
"""

from __future__ import annotations

from pathlib import PurePosixPath

JPEG_SUFFIXES = (".jpeg", ".jpg")
PILLOW_SUFFIXES = (".png", ".tif", ".tiff")
IMAGE_SUFFIXES = JPEG_SUFFIXES + PILLOW_SUFFIXES


def suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def is_image_name(name: str) -> bool:
    """Whether `name` is a photo SightX reads, by its suffix."""
    return suffix(name) in IMAGE_SUFFIXES


def decodes_with_pillow(name: str) -> bool:
    """Whether the input named `name` goes through Pillow rather than libjpeg-turbo."""
    return suffix(name) in PILLOW_SUFFIXES
