"""JPEG decode/encode on bytes: sizes, DCT scaling, and the error reasons."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from sightx.image import codec
from sightx.image.codec import CodecError


def _gradient(w: int, h: int) -> np.ndarray:
    """A smooth colour image: compresses well and survives JPEG nearly unchanged."""
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    return np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2).astype(np.uint8)


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    return codec.encode(_gradient(3888, 2592), 80)


def _reason(data: bytes) -> str:
    with pytest.raises(CodecError) as err:
        codec.decode(data)
    return err.value.reason


def test_read_size_from_header(big_jpeg: bytes) -> None:
    assert codec.read_size(big_jpeg) == (3888, 2592)
    # Header only: a file cut right after the header still reports its size.
    assert codec.read_size(big_jpeg[:2000]) == (3888, 2592)


def test_round_trip_full_size() -> None:
    img = _gradient(300, 200)
    out, scale = codec.decode(codec.encode(img, 95))
    assert out.shape == (200, 300, 3) and out.dtype == np.uint8 and scale == 1.0
    assert np.abs(out.astype(int) - img.astype(int)).mean() < 2


def test_reduced_decode_picks_smallest_sufficient_scale(big_jpeg: bytes) -> None:
    img, scale = codec.decode(big_jpeg, (600, 600))
    assert scale == 0.25 and img.shape == (648, 972, 3)
    img, scale = codec.decode(big_jpeg, (700, 700))  # 1/4 is too small now: 3/8
    assert scale == 0.375 and img.shape == (972, 1458, 3)
    img, scale = codec.decode(big_jpeg, (10_000, 10_000))  # never upscales
    assert scale == 1.0 and img.shape == (2592, 3888, 3)


def test_grayscale_jpeg_decodes_to_rgb() -> None:
    gray = np.tile(np.arange(0, 200, 2, dtype=np.uint8), (50, 1))[..., None]
    data = simplejpeg.encode_jpeg(gray, 95, colorspace="GRAY", colorsubsampling="Gray")
    img, _ = codec.decode(data)
    assert img.shape == (50, 100, 3)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])


def test_encode_is_deterministic_and_validates_input() -> None:
    img = _gradient(256, 256)
    assert codec.encode(img, 95) == codec.encode(img.copy(), 95)
    assert codec.encode(img, 95).startswith(codec.JPEG_SOI)
    assert len(codec.encode(img, 50)) < len(codec.encode(img, 95))
    with pytest.raises(ValueError):
        codec.encode(img.astype(np.float32))
    with pytest.raises(ValueError):
        codec.encode(img[..., 0])


def test_encode_chroma_resolution() -> None:
    img = _gradient(256, 256)
    img[::2, :, 0] = 255  # one-pixel red stripes: colour detail that 4:2:0 halves
    assert simplejpeg.decode_jpeg_header(codec.encode(img))[3] == "420"
    assert simplejpeg.decode_jpeg_header(codec.encode(img, 95, "444"))[3] == "444"
    err = {c: np.abs(codec.decode(codec.encode(img, 95, c))[0].astype(int) - img).mean() for c in codec.CHROMA}
    assert err["444"] < err["420"]
    with pytest.raises(ValueError):
        codec.encode(img, 95, "411")


def test_encode_accepts_non_contiguous_views() -> None:
    img = _gradient(300, 200)
    view = img[:, ::-1]
    assert codec.encode(view) == codec.encode(np.ascontiguousarray(view))


def test_empty_file() -> None:
    assert _reason(b"") == "empty-file"
    with pytest.raises(CodecError, match="empty-file"):
        codec.read_size(b"")


def test_not_jpeg() -> None:
    png = io.BytesIO()
    Image.fromarray(_gradient(32, 32)).save(png, format="PNG")
    assert _reason(png.getvalue()) == "not-jpeg"
    assert _reason(b"image_id,level\n10_left,0\n") == "not-jpeg"


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated(keep: float) -> None:
    data = codec.encode(np.random.default_rng(0).integers(0, 256, (400, 600, 3), dtype=np.uint8), 90)
    assert _reason(data[: int(len(data) * keep)]) == "truncated"


def test_truncated_detected_by_libjpeg_even_with_eoi() -> None:
    # The tail marker is present but scan data is missing: libjpeg's warning must raise.
    data = codec.encode(np.random.default_rng(0).integers(0, 256, (400, 600, 3), dtype=np.uint8), 90)
    assert _reason(data[: len(data) // 2] + b"\xff\xd9") == "truncated"


def test_trailing_zero_padding_is_accepted() -> None:
    data = codec.encode(_gradient(64, 48), 90)
    img, _ = codec.decode(data + b"\x00" * 100)
    assert img.shape == (48, 64, 3)


def test_corrupt_header_is_decode_error() -> None:
    assert _reason(codec.JPEG_SOI + b"\xe0garbage" * 20 + b"\xff\xd9") == "decode-error"
    with pytest.raises(CodecError) as err:
        codec.read_size(codec.JPEG_SOI + b"\x00" * 10)
    assert err.value.reason == "decode-error"


def test_codec_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(CodecError("truncated", "no end-of-image marker")))
    assert isinstance(err, ValueError) and err.reason == "truncated" and "no end-of-image" in str(err)
