"""The budget of one photo (sightx.image.limits): scans, bytes per pixel, the pixel limit, truncated
data on every decoder path, messages without library internals. Real JPEG, PNG and TIFF bytes built
here; each file decodes (slowly, or with grey filled in) without the limits."""

from __future__ import annotations

import csv
import io
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from sightx.errors import Rejection
from sightx.image import codec, limits
from sightx.image.photos import check_photo, decode_photo
from sightx.image.preprocess import PreprocessOptions, preprocess_bytes

OPTS = PreprocessOptions(size=64)


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def photo_rgb(w: int = 320, h: int = 240) -> np.ndarray:
    """A textured frame: bytes per pixel like a photo's."""
    rng = np.random.default_rng(0)
    return (rng.integers(0, 64, (h, w, 3)) + 96).astype(np.uint8)


def with_empty_scans(jpeg: bytes, n: int) -> bytes:
    """`jpeg` (progressive) with `n` more scans before its end: copies of its last scan made a first
    scan over AC 1-63 at full precision (Ah=Al=0). On a blank frame every such scan is a few bytes
    of end-of-block runs, adds nothing, and libjpeg (strict) accepts it: each costs a pass."""
    last = jpeg.rindex(b"\xff\xda")
    length = int.from_bytes(jpeg[last + 2 : last + 4], "big")
    header = bytearray(jpeg[last : last + 2 + length])
    header[-1] = 0x00  # Ah << 4 | Al
    scan = bytes(header) + jpeg[last + 2 + length : -2]
    return jpeg[:-2] + scan * n + jpeg[-2:]


@pytest.fixture(scope="module")
def scan_bomb() -> bytes:
    blank = encode(Image.new("L", (640, 640), 0), "JPEG", progressive=True, quality=90)
    return with_empty_scans(blank, 3000)


def cmyk_header_bomb(side: int = 7700) -> bytes:
    """A few hundred bytes of CMYK JPEG whose header claims side x side pixels (59 MP, under the 60 MP limit)."""
    data = encode(Image.new("CMYK", (16, 16), (0, 0, 0, 0)), "JPEG")
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + side.to_bytes(2, "big") * 2 + data[sof + 9 :]


def png_bomb(side: int = 7000) -> bytes:
    """A complete, valid RGB PNG of side x side black pixels (49 MP): ~140 KB that inflate to 147 MB."""
    z = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * side)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


def reason_of(fn: object, *args: object) -> tuple[str, str, float]:
    start = time.perf_counter()
    with pytest.raises(Rejection) as e:
        fn(*args)  # type: ignore[operator]
    return e.value.reason, str(e.value), time.perf_counter() - start


# --- scans --------------------------------------------------------------------------------------


def test_scans_are_counted_from_the_markers() -> None:
    rgb = Image.fromarray(photo_rgb())
    assert limits.count_scans(encode(rgb, "JPEG")) == 1
    assert limits.count_scans(encode(rgb, "JPEG", progressive=True)) == 10  # libjpeg's script
    assert limits.count_scans(encode(rgb.convert("L"), "JPEG", progressive=True)) == 6
    # An APP segment holding SOS bytes (an EXIF thumbnail's scans) is skipped by its length.
    plain = encode(rgb, "JPEG")
    app = b"\xff\xe1" + (2 + 40).to_bytes(2, "big") + b"\xff\xda" * 20
    assert limits.count_scans(plain[:2] + app + plain[2:]) == 1


def test_a_progressive_jpeg_with_thousands_of_empty_scans_is_refused_undecoded(scan_bomb: bytes) -> None:
    assert limits.count_scans(scan_bomb) == 3006
    img = simplejpeg.decode_jpeg(scan_bomb, strict=True)  # valid: libjpeg decodes it, one pass per scan
    assert img.shape == (640, 640, 3)
    for fn, args in ((codec.decode, (scan_bomb,)), (preprocess_bytes, (scan_bomb, OPTS)), (decode_photo, (scan_bomb, OPTS))):
        reason, message, seconds = reason_of(fn, *args)
        assert reason == "too-many-scans" and seconds < 0.2, (fn, message, seconds)
    assert "more than 64" in message
    near = with_empty_scans(encode(Image.new("L", (640, 640), 0), "JPEG", progressive=True), limits.MAX_SCANS - 6)
    assert codec.decode(near)[0].shape == (640, 640, 3)  # the limit itself is allowed


# --- bytes per pixel ------------------------------------------------------------------------------


def test_a_cmyk_header_bomb_under_the_pixel_limit_is_refused_from_the_header() -> None:
    bomb = cmyk_header_bomb()
    assert len(bomb) < 600 and codec.read_header(bomb) == (7700, 7700, "CMYK")
    assert 7700 * 7700 < OPTS.max_pixels
    reason, message, seconds = reason_of(decode_photo, bomb, OPTS)
    assert reason == "too-few-bytes" and seconds < 0.05, message
    assert "7700x7700" in message


def test_png_and_tiff_bombs_under_the_pixel_limit_are_refused_from_the_header() -> None:
    png = png_bomb()
    assert Image.open(io.BytesIO(png)).size == (7000, 7000) and len(png) < 200_000
    tiff = encode(Image.new("RGB", (6000, 6000)), "TIFF", compression="tiff_adobe_deflate")
    for bomb in (png, tiff):
        reason, message, seconds = reason_of(decode_photo, bomb, OPTS)
        assert reason == "too-few-bytes" and seconds < 0.2, message
        assert reason_of(check_photo, bomb, OPTS.max_pixels)[0] == "too-few-bytes"
        assert reason_of(check_photo, bomb)[0] == "too-large"  # a server's 25 MP


def test_real_photos_hold_far_more_bytes_than_the_floor() -> None:
    """Even a black frame as a JPEG (the least a Huffman-coded JPEG can hold) passes the floor."""
    for data in (
        encode(Image.new("RGB", (2000, 1500)), "JPEG", quality=50, optimize=True),
        encode(Image.new("RGB", (2000, 1500)), "JPEG", progressive=True, optimize=True),
        encode(Image.new("L", (2000, 1500)), "JPEG", optimize=True),
    ):
        assert len(data) >= limits.MIN_BYTES_PER_MEGAPIXEL["JPEG"] * 3, len(data)
        limits.check_bytes("JPEG", 2000, 1500, len(data))
    for fmt, kw in (("PNG", {}), ("TIFF", {"compression": "tiff_lzw"})):
        data = encode(Image.fromarray(photo_rgb(800, 600)), fmt, **kw)
        assert check_photo(data) == (fmt, 800, 600)


# --- the pixel limit ------------------------------------------------------------------------------


def test_a_server_passes_its_own_lower_pixel_limit() -> None:
    rgb = photo_rgb(1200, 1000)
    data = codec.encode(rgb, 90)
    assert check_photo(data) == ("JPEG", 1200, 1000)
    assert reason_of(check_photo, data, 1_000_000)[0] == "too-large"
    assert reason_of(decode_photo, data, OPTS, 1_000_000)[0] == "too-large"
    assert decode_photo(data, OPTS, 2_000_000).size == (1200, 1000)
    assert limits.SERVE_MAX_PIXELS == 25_000_000 < OPTS.max_pixels


# --- truncated data on every path ----------------------------------------------------------------


def test_a_cmyk_jpeg_missing_its_data_is_truncated_not_filled_grey() -> None:
    cmyk = encode(Image.fromarray(photo_rgb(800, 600)).convert("CMYK"), "JPEG", quality=90)
    assert decode_photo(cmyk, OPTS).image.shape == (600, 800, 3)
    cut = cmyk[: len(cmyk) // 2] + b"\xff\xd9"  # the end marker is there, half the data is not
    Image.open(io.BytesIO(cut)).load()  # Pillow alone fills the missing half with grey
    assert reason_of(decode_photo, cut, OPTS)[0] == "truncated"


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_truncated_png_and_tiff_are_refused(fmt: str) -> None:
    data = encode(Image.fromarray(photo_rgb(800, 600)), fmt)
    assert reason_of(decode_photo, data[: int(len(data) * 0.9)], OPTS)[0] == "truncated"


# --- messages -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 8 + b"IHDR" + b"\x00" * 20,
        b"\x89PNG\r\n\x1a\nshort",
        b"II*\x00\x08\x00\x00\x00junk",
        b"II*\x00junk",  # Pillow warns "Corrupt EXIF data" from its own file in site-packages
        codec.JPEG_SOI + b"\xe0garbage" * 20 + b"\xff\xd9",
        codec.JPEG_SOI + b"\x00" * 10,
    ],
)
def test_refusals_carry_no_object_reprs_or_library_internals_and_no_pillow_warnings(data: bytes) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reason, message, _ = reason_of(decode_photo, data, OPTS)
    assert reason in ("decode-error", "truncated", "too-small"), message
    assert not any(s in message for s in ("0x", " at ", "object", "tjDecompress", "BytesIO", "()")), message
    assert [str(w.message) for w in caught] == []


# --- the same limits where photos are read in bulk: shard, explore -------------------------------


@pytest.fixture(scope="module")
def hostile(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory, scan_bomb: bytes) -> Path:
    raw = tmp_path_factory.mktemp("hostile")
    real = sorted((tiny_raw / "train").glob("*.jpeg"))[:2]
    for p in real:
        (raw / p.name).write_bytes(p.read_bytes())
    (raw / "scans_left.jpeg").write_bytes(scan_bomb)
    (raw / "cmyk_left.jpeg").write_bytes(cmyk_header_bomb())
    (raw / "png_left.png").write_bytes(png_bomb())
    names = [p.stem for p in real] + ["scans_left", "cmyk_left", "png_left"]
    (raw / "labels.csv").write_text("image,level\n" + "".join(f"{n},0\n" for n in names))
    return raw


def test_shard_records_each_limit_as_a_rejection(hostile: Path, tmp_path: Path) -> None:
    from sightx.contracts.rejects import FILE
    from sightx.shard import ShardOptions, run

    opts = ShardOptions(PreprocessOptions(size=64), shard_size=10, val_fraction=0, labels=str(hostile / "labels.csv"), progress=False)
    start = time.perf_counter()
    m = run(hostile, tmp_path / "out", opts)
    assert time.perf_counter() - start < 20
    rows = {r["source"]: r["reason"] for r in csv.DictReader((tmp_path / "out" / FILE).open())}
    assert rows == {"scans_left.jpeg": "too-many-scans", "cmyk_left.jpeg": "too-few-bytes", "png_left.png": "too-few-bytes"}
    assert m["summary"]["written"] == 2


def test_explore_records_each_limit_as_the_shards_do(hostile: Path) -> None:
    from sightx.explore.common import thumb
    from sightx.explore.raw import image_facts

    for name, reason in (("scans_left.jpeg", "too-many-scans"), ("cmyk_left.jpeg", "too-few-bytes"), ("png_left.png", "too-few-bytes")):
        data = (hostile / name).read_bytes()
        assert image_facts(name, data)["reason"] == reason
        assert thumb(data, name) is None
