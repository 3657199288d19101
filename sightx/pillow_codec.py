"""PNG and TIFF inputs (APTOS, Messidor-2, some IDRiD exports), decoded in full through Pillow.

Neither format has JPEG's DCT, so there is no reduced-size decode: these cost a full decode per
image, which the shard summary says. Which decoder reads a file follows its name's suffix, so a
PNG misnamed `.jpeg` is still the `not-jpeg` rejection it always was.
"""

from __future__ import annotations

import io
import warnings
from pathlib import PurePosixPath

import numpy as np
from PIL import Image

from sightx.codec import CodecError

SUFFIXES = (".png", ".tif", ".tiff")


def decodes(name: str) -> bool:
    """Whether the input named `name` goes through Pillow rather than libjpeg-turbo."""
    return PurePosixPath(name).suffix.lower() in SUFFIXES


def _open(data: bytes) -> Image.Image:
    if len(data) == 0:
        raise CodecError("empty-file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise CodecError("decode-error", f"{type(e).__name__}: {e}".splitlines()[0]) from None


def read_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header alone."""
    with _open(data) as im:
        return im.size


def decode(data: bytes) -> tuple[np.ndarray, float]:
    """RGB uint8 at full size (scale 1.0); a truncated file is refused, not padded."""
    with _open(data) as im:
        try:
            im.load()
            rgb = im.convert("RGB")
        except OSError as e:
            reason = "truncated" if "truncated" in str(e).lower() else "decode-error"
            raise CodecError(reason, str(e).splitlines()[0]) from None
    return np.asarray(rgb), 1.0
