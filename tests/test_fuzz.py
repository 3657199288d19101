"""Fuzzing (issue 16 item 15): mutated real JPEG bytes through the raw preprocessing path and the
shard-sample decoder give a result or a reason-coded Rejection, never another exception.

The normal suite runs a few seeded examples per target (seconds); `make fuzz` runs thousands, unseeded
(SIGHTX_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sightx.contracts import sample as smp
from sightx.errors import Rejection
from sightx.image.preprocess import PreprocessOptions, Processed, preprocess_bytes

LONG = "SIGHTX_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(
    max_examples=int(os.environ.get("SIGHTX_FUZZ_EXAMPLES", "100")),
    deadline=None,
    derandomize=not LONG,  # the normal suite is reproducible; a long run explores
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Marker codes a mutation writes: frame types (progressive, lossless, arithmetic), tables, restarts, SOI/EOI/SOS.
MARKERS = [0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC9, 0xCC, 0xD0, 0xD8, 0xD9, 0xDA, 0xDB, 0xDD, 0xE0, 0xE1, 0xFE, 0x01, 0x00]
# Frame sides a size mutation writes: the pixel limits' edges, zero, and the 16-bit maximum.
SIDES = st.sampled_from([0, 1, 63, 64, 65, 255, 256, 4096, 4097, 9000, 50000, 65535]) | st.integers(0, 0xFFFF)


def _segments(data: bytes) -> list[int]:
    """Offsets of the marker bytes (after 0xFF) of the header segments, up to the start of scan."""
    out, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        out.append(i + 1)
        if data[i + 1] == 0xDA:
            break
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return out


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """1-3 of: bit flips (mostly in the header), a truncation, a marker rewritten, a segment length or
    the frame size rewritten."""
    b = bytearray(data)
    segments = _segments(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "marker", "length", "size"]))
        if kind == "flip":
            for _ in range(draw(st.integers(1, 8))):
                at = draw(st.integers(0, min(len(b), 2000) - 1) if draw(st.booleans()) else st.integers(0, len(b) - 1))
                b[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            b = b[: draw(st.integers(0, len(b) - 1))]
        elif kind == "size":  # height and width in the frame header
            for at in (i for i in segments if i + 8 <= len(b) and b[i] in (0xC0, 0xC1, 0xC2)):
                b[at + 4 : at + 8] = draw(SIDES).to_bytes(2, "big") + draw(SIDES).to_bytes(2, "big")
        elif segments:
            at = draw(st.sampled_from(segments))
            if at + 3 > len(b):
                continue
            if kind == "marker":
                b[at] = draw(st.sampled_from(MARKERS))
            else:
                b[at + 1 : at + 3] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
        if not b:
            break
    return bytes(b)


@pytest.fixture(scope="module")
def photo(tiny_raw: Path) -> bytes:
    return sorted((tiny_raw / "train").glob("*.jpeg"))[0].read_bytes()


@pytest.fixture(scope="module")
def stored(tiny_shards: Path) -> bytes:
    return smp.image_of(next(smp.read_samples(tiny_shards / "train-000000.tar"))[1])


def _reason_coded(e: Rejection) -> None:
    assert isinstance(e.reason, str) and e.reason and str(e), e


def test_mutated_photos_through_preprocessing_give_a_result_or_a_rejection(photo: bytes) -> None:
    opts = PreprocessOptions(size=64)

    @FUZZ
    @given(mutated(photo))
    def check(data: bytes) -> None:
        try:
            out = preprocess_bytes(data, opts)
        except Rejection as e:
            _reason_coded(e)
            return
        assert isinstance(out, Processed) and out.image.shape == (64, 64, 3) and out.jpeg.startswith(b"\xff\xd8")

    check()


def test_mutated_shard_samples_through_the_sample_decoder_give_an_image_or_a_rejection(stored: bytes) -> None:
    @FUZZ
    @given(mutated(stored))
    def check(data: bytes) -> None:
        try:
            image = smp.decode_sample(data, max_pixels=64 * 64)
        except Rejection as e:
            _reason_coded(e)
            return
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.size <= 3 * 64 * 64

    check()
