"""EXIF orientation (issue 16 item 11): a photo stored turned, with the tag that turns it back, is
preprocessed as the upright photo is, in shard, predict and serve, and the turn is recorded."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from sample_photos import encode, rgb_of

from sightx.contracts import sample as smp
from sightx.errors import Rejection
from sightx.image import orientation
from sightx.image.photos import decode_photo, preprocess_input
from sightx.image.preprocess import PreprocessOptions, preprocess_bytes
from sightx.inference.grader import preprocess_photo

OPTS = PreprocessOptions(size=64, quality=90)
T = Image.Transpose
# The turn that stores an upright photo so that tag v turns it back (the inverse of exif_transpose's).
STORE = {2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE, 6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270}


def exif(value: int) -> bytes:
    tags = Image.Exif()
    tags[0x0112] = value
    return tags.tobytes()


@pytest.fixture(scope="module")
def upright(tiny_raw: Path) -> Image.Image:
    """A synthetic fundus photo whose field sightx-shard finds, as pixels, cut to sides that are
    multiples of 16: then a turned photo's JPEG blocks fall where the upright photo's do, and the
    reduced-scale decodes can be compared pixel for pixel (README: EXIF orientation)."""
    for p in sorted((tiny_raw / "train").glob("*.jpeg")):
        img = Image.fromarray(rgb_of(p.read_bytes()))
        img = img.crop((0, 0, img.width // 16 * 16, img.height // 16 * 16))
        try:
            preprocess_bytes(encode(img, "JPEG", quality=95), OPTS)
            return img
        except Rejection:
            continue
    raise AssertionError("no usable synthetic photo")


@pytest.fixture(scope="module")
def tolerance(upright: Image.Image) -> float:
    """JPEG tolerance: how far the output of the upright photo encoded at q90 is from its q95 encode's."""
    q95, q90 = (preprocess_photo(encode(upright, "JPEG", quality=q), OPTS).jpeg for q in (95, 90))
    return 1.25 * max(1.0, _close(smp.decode_sample(q95), smp.decode_sample(q90)))


@pytest.fixture(scope="module")
def stored(upright: Image.Image) -> dict[int, bytes]:
    """The photo as a camera would store it under each tag value 1-8 (0: no EXIF at all), each a q95 JPEG."""
    out = {0: encode(upright, "JPEG", quality=95)}
    for v in range(1, 9):
        img = upright.transpose(STORE[v]) if v in STORE else upright
        out[v] = encode(img, "JPEG", quality=95, exif=exif(v))
        assert np.array_equal(np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(out[v])))).shape, np.asarray(upright).shape)
    return out


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def tiff(order: bytes, value: int, kind: int = 3) -> bytes:
    """A TIFF block whose IFD0 holds one tag, 0x0112 of type `kind`."""
    bo = "little" if order == b"II" else "big"
    n = lambda x, size: x.to_bytes(size, bo)  # noqa: E731
    val = n(value, 2) + b"\0\0" if kind == 3 else n(value, 4)
    return order + n(42, 2) + n(8, 4) + n(1, 2) + n(0x0112, 2) + n(kind, 2) + n(1, 4) + val + n(0, 4)


def test_the_tag_is_read_from_the_header_as_pillow_reads_it(stored: dict[int, bytes]) -> None:
    for v, data in stored.items():
        assert orientation.read(data) == (v or 1) == Image.open(io.BytesIO(data)).getexif().get(0x0112, 1)
    body = stored[0][2:]  # after SOI
    for block, want in [
        (tiff(b"MM", 6), 6),  # big-endian, as many cameras write
        (tiff(b"II", 8, kind=4), 8),  # a LONG where a SHORT belongs
        (tiff(b"II", 9), 1),  # not an orientation
        (tiff(b"II", 6)[:14], 1),  # IFD cut short
        (b"MM\0\x2a\xff\xff\xff\xff", 1),  # IFD offset past the end
        (b"XX", 1),
    ]:
        data = b"\xff\xd8" + segment(0xE0, b"JFIF\0" + b"\0" * 9) + segment(0xE1, b"Exif\0\0" + block) + body
        assert orientation.read(data) == want, block
    assert orientation.read(b"\xff\xd8" + segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0") + body) == 1  # XMP, not EXIF
    assert orientation.read(b"\xff\xd8\xff\xe1\x00") == 1 and orientation.read(b"\xff\xd8\xff\xe1\x00\x01") == 1


def test_turning_upright_is_pillows_exif_transpose_for_every_value() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for v in range(1, 9):
        img = Image.fromarray(rgb)
        img.getexif()[0x0112] = v
        assert np.array_equal(orientation.upright(rgb, v), np.asarray(ImageOps.exif_transpose(img))), v
        assert orientation.upright(rgb, v).flags.c_contiguous


def _close(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_predict_and_serve_decode_every_orientation_small_and_upright(stored: dict[int, bytes], tolerance: float) -> None:
    """The DCT-scaled decode for every JPEG: turned photos are no longer decoded at full size by Pillow."""
    want = decode_photo(stored[0], OPTS)
    for v in range(1, 9):
        got = decode_photo(stored[v], OPTS)
        assert got.size == want.size and got.scale == want.scale and got.orientation == v, v
        assert _close(got.image, want.image) < tolerance, v


def test_every_orientation_grades_as_the_upright_photo_and_is_recorded(stored: dict[int, bytes], tolerance: float) -> None:
    want = preprocess_photo(stored[0], OPTS)
    for v in range(1, 9):
        got = preprocess_photo(stored[v], OPTS)
        assert got.measures.get("exif_orientation") == (v if v > 1 else None), v
        assert got.measures["orig_size"] == want.measures["orig_size"], v
        for k in ("cx", "cy", "r"):
            assert got.measures["circle"][k] == pytest.approx(want.measures["circle"][k], abs=0.02 * want.measures["circle"]["r"]), (v, k)
        assert _close(smp.decode_sample(got.jpeg), smp.decode_sample(want.jpeg)) < tolerance, v
        assert got.jpeg == preprocess_input(stored[v], f"p{v}.jpeg", OPTS).jpeg, v  # exactly what sightx-shard stores


def test_a_turned_png_goes_upright_through_pillow_exactly_and_is_recorded(upright: Image.Image) -> None:
    want = preprocess_photo(encode(upright, "PNG"), OPTS)
    for v in (3, 6, 7):
        got = preprocess_photo(encode(upright.transpose(STORE[v]), "PNG", exif=exif(v)), OPTS)
        assert got.measures["exif_orientation"] == v and got.jpeg == want.jpeg, v  # lossless in, exact turns: the same bytes out


def test_every_orientation_shards_as_the_upright_photo_and_is_recorded(stored: dict[int, bytes], tolerance: float, tmp_path: Path) -> None:
    from sightx.shard import ShardOptions, run

    raw = tmp_path / "raw"
    raw.mkdir()
    for v, data in stored.items():
        (raw / f"p{v}_left.jpeg").write_bytes(data)
    m = run(raw, tmp_path / "out", ShardOptions(OPTS, shard_size=20, val_fraction=0, unlabeled=True, workers=1, progress=False))
    assert m["summary"]["written"] == 9
    samples = {smp.meta_of(parts)["image"]: parts for _, parts in smp.read_samples(tmp_path / "out" / "test-000000.tar")}
    want = samples["p0_left"]
    for v in range(1, 9):
        meta = smp.meta_of(samples[f"p{v}_left"])
        assert meta.get("exif_orientation") == (v if v > 1 else None) and meta["orig_size"] == smp.meta_of(want)["orig_size"], v
        assert _close(smp.decode_sample(smp.image_of(samples[f"p{v}_left"])), smp.decode_sample(smp.image_of(want))) < tolerance, v
