"""The one preprocessing path, end to end on real JPEG bytes."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from sightx.image import codec, fov, fundus
from sightx.image.preprocess import PreprocessOptions, Processed, Rejected, preprocess_bytes

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "fundus-real"


def fundus_jpeg(w: int, h: int, cx: float, cy: float, r: float, quality: int = 90) -> bytes:
    """Textured orange-red disk on a noisy dark background, as JPEG bytes."""
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(8, 3, (h, w, 3)), 0, 255).astype(np.uint8)
    cv2.circle(img, (round(cx * 16), round(cy * 16)), round(r * 16), (190, 90, 40), -1, cv2.LINE_AA, shift=4)
    vessels = cv2.GaussianBlur(rng.normal(0, 1, (h // 8, w // 8)).astype(np.float32), (0, 0), 2)
    vessels = cv2.resize(vessels, (w, h), interpolation=cv2.INTER_LINEAR)
    inside = fundus.circle_mask((h, w), fov.Circle(cx, cy, r))
    img[inside] = np.clip(img[inside] * (1 + 0.3 * vessels[inside, None]), 0, 255).astype(np.uint8)
    return codec.encode(img, quality)


@pytest.fixture(scope="module")
def eyepacs_like() -> bytes:
    # 3888x2592 camera, circle cut off at top and bottom (height = 0.94 D).
    return fundus_jpeg(3888, 2592, 1950, 1290, 1380)


def _reject_reason(data: bytes, opts: PreprocessOptions) -> str:
    with pytest.raises(Rejected) as err:
        preprocess_bytes(data, opts)
    return err.value.reason


def test_output_shape_info_and_circle(eyepacs_like: bytes) -> None:
    out = preprocess_bytes(eyepacs_like, PreprocessOptions())
    assert isinstance(out, Processed)
    assert out.image.shape == (512, 512, 3) and out.image.dtype == np.uint8
    assert out.jpeg.startswith(codec.JPEG_SOI) and codec.read_size(out.jpeg) == (512, 512)
    info = out.info
    assert set(info) >= {"orig_size", "decode_scale", "circle", "fov_fraction", "brightness", "contrast", "sharpness"}
    assert info["orig_size"] == [3888, 2592]
    assert info["decode_scale"] == 0.25  # 1/4 keeps the expected diameter >= 512
    c = info["circle"]
    assert abs(c["r"] - 1380) < 0.02 * 1380
    assert np.hypot(c["cx"] - 1950, c["cy"] - 1290) < 0.02 * 1380
    assert 0.9 < info["fov_fraction"] < 0.99  # cut off at top and bottom
    assert all(isinstance(v, float) for k, v in info.items() if k in ("brightness", "contrast", "sharpness"))


def test_output_is_centred_and_masked(eyepacs_like: bytes) -> None:
    img = preprocess_bytes(eyepacs_like, PreprocessOptions()).image
    c = fov.Circle(255.5, 255.5, 256)
    outside = ~fundus.circle_mask(img.shape[:2], c, 0.93)
    assert img[outside].max() == 0
    inner = fundus.circle_mask(img.shape[:2], c, 0.85)
    assert np.abs(img[inner].mean(axis=0) - 128).max() < 10  # Graham: grey field


def test_deterministic_bytes(eyepacs_like: bytes) -> None:
    a = preprocess_bytes(eyepacs_like, PreprocessOptions())
    b = preprocess_bytes(bytes(eyepacs_like), PreprocessOptions())
    assert a.jpeg == b.jpeg and a.info == b.info


@pytest.mark.parametrize("method", ["clahe", "none"])
def test_other_normalizers_mask_at_full_radius(eyepacs_like: bytes, method: str) -> None:
    img = preprocess_bytes(eyepacs_like, PreprocessOptions(normalize=method)).image
    ring = fundus.circle_mask((512, 512), fov.Circle(255.5, 255.5, 250)) & ~fundus.circle_mask(
        (512, 512), fov.Circle(255.5, 255.5, 256), 0.93
    )
    assert img[ring][:, 0].mean() > 100  # the red retina is kept out to the rim


def test_the_loader_decodes_the_stored_sample_back(eyepacs_like: bytes) -> None:
    out = preprocess_bytes(eyepacs_like, PreprocessOptions())
    replay = codec.decode(out.jpeg)[0]  # what sightx.train.stream does with a stored sample
    assert replay.shape == (512, 512, 3)
    assert np.abs(replay.astype(int) - out.image.astype(int)).mean() < 2


def test_small_field_takes_the_finer_decode() -> None:
    # Diameter 0.4 * height: at the 1/4 decode it would be ~260 px, too small for 512.
    data = fundus_jpeg(3888, 2592, 1900, 1300, 520)
    out = preprocess_bytes(data, PreprocessOptions(min_radius_frac=0.1))
    assert out.info["decode_scale"] == 0.5  # 2 * 520 * 0.5 = 520 >= 512
    c = out.info["circle"]
    assert abs(c["r"] - 520) < 0.02 * 520 and np.hypot(c["cx"] - 1900, c["cy"] - 1300) < 0.02 * 520
    assert out.image.shape == (512, 512, 3)


def test_slightly_small_field_is_enlarged_not_decoded_again() -> None:
    # Diameter 2 * 253 = 506 px at the 1/4 decode: 1% short of 512, within the tolerance.
    data = fundus_jpeg(3888, 2592, 1900, 1300, 1012)
    out = preprocess_bytes(data, PreprocessOptions())
    assert out.info["decode_scale"] == 0.25
    assert out.image.shape == (512, 512, 3)


def test_fov_too_small() -> None:
    data = fundus_jpeg(1800, 1200, 900, 600, 250)
    assert _reject_reason(data, PreprocessOptions()) == "fov-too-small"


def test_no_fov() -> None:
    data = codec.encode(np.full((1000, 1500, 3), 30, np.uint8))
    assert _reject_reason(data, PreprocessOptions()) == "no-fov"


def _claim_size(data: bytes, w: int, h: int) -> bytes:
    """Rewrite the frame header (SOF0) to claim another size: a decompression bomb."""
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", h, w) + data[sof + 9 :]


def test_too_large_is_decided_from_the_header() -> None:
    small = codec.encode(np.zeros((64, 64, 3), np.uint8))
    bomb = _claim_size(small, 30_000, 20_000)
    assert codec.read_size(bomb) == (30_000, 20_000)
    # The body cannot hold 600 MP; the reason proves it was never decoded.
    assert _reject_reason(bomb, PreprocessOptions()) == "too-large"


def test_too_large_by_option(eyepacs_like: bytes) -> None:
    assert _reject_reason(eyepacs_like, PreprocessOptions(max_pixels=5_000_000)) == "too-large"


def test_too_small() -> None:
    data = fundus_jpeg(300, 200, 150, 100, 90)
    assert _reject_reason(data, PreprocessOptions()) == "too-small"


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "empty-file"), (b"\x89PNG\r\n\x1a\n", "not-jpeg"), (b"hello", "not-jpeg")],
)
def test_codec_reasons_pass_through(data: bytes, reason: str) -> None:
    assert _reject_reason(data, PreprocessOptions()) == reason


def test_truncated_passes_through(eyepacs_like: bytes) -> None:
    assert _reject_reason(eyepacs_like[: len(eyepacs_like) // 2], PreprocessOptions()) == "truncated"


def test_rejected_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(Rejected("no-fov", "nothing round")))
    assert err.reason == "no-fov" and err.detail == "nothing round" and "no-fov" in str(err)


def test_options_round_trip_and_validation() -> None:
    opts = PreprocessOptions(size=384, normalize="clahe", mask_scale=0.9)
    assert PreprocessOptions.from_dict(opts.to_dict()) == opts
    assert PreprocessOptions.from_dict({"chroma": "420"}) == PreprocessOptions()
    # Checkpoints and manifests from before the option encoded 4:4:4: they replay as made.
    assert PreprocessOptions.from_dict({}) == PreprocessOptions(chroma="444")
    with pytest.raises(ValueError):
        PreprocessOptions(chroma="422")
    with pytest.raises(ValueError):
        PreprocessOptions.from_dict({"size": 512, "sharpen": True})
    with pytest.raises(ValueError):
        PreprocessOptions(normalize="sharpen")


def test_other_output_size(eyepacs_like: bytes) -> None:
    out = preprocess_bytes(eyepacs_like, PreprocessOptions(size=256))
    assert out.image.shape == (256, 256, 3)
    assert out.info["decode_scale"] == 0.125  # 324 px high is enough for a 256 px field


@pytest.mark.skipif(not REAL.is_dir(), reason="real photographs not available")
def test_real_photographs_are_accepted() -> None:
    for path in sorted(REAL.glob("*.jpg")):
        info = preprocess_bytes(path.read_bytes(), PreprocessOptions()).info
        w, h = info["orig_size"]
        assert 0.4 * min(w, h) < info["circle"]["r"] < 0.75 * max(w, h), path.name
