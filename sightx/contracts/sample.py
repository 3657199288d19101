"""One shard sample: its tar member names and JSON metadata, written and read here and nowhere else.

A sample is `KEY.jpg` (the preprocessed field of view), `KEY.cls` (the class the set is labelled with:
the grade, or in a quality set (manifest `labels: quality`) EyeQ's quality class; absent for unlabelled
images) and `KEY.json` (where it came from and what preprocessing measured, the gradability record
`{"score", "components", "source"}` of sightx.image.gradability included), the WebDataset key
convention, so stock webdataset reads the shards too. A shard is data from outside: only these
three members are ever read (a `.pyd` or `.pth` could be a pickle), and each is checked on read.
In a quality set the JSON's `grade` is null and its `quality` holds the class that `.cls` holds.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from sightx.errors import Rejection
from sightx.image import codec
from sightx.labels.grades import NUM_GRADES
from sightx.labels.kinds import QUALITY

IMAGE = "jpg"
GRADE = "cls"
META = "json"
MEMBERS = (f".{IMAGE}", f".{GRADE}", f".{META}")
# The JSON keys every sample carries besides the preprocessing facts (`Processed.info`).
META_KEYS = ("image", "key", "source", "patient", "eye", "grade", "split", "other_eye", "weight", "weight_effective")
# A stored image is a square at the shard's output size (at most 4096 px): a header claiming more
# is hostile, not a photo, and is refused before any pixel is decoded.
MAX_SAMPLE_PIXELS = 4096 * 4096
# No member of a shard is near this (a 4096 px q95 JPEG is a few MB): a header claiming more is
# refused before its data is read, so a lying header cannot make a reader allocate gigabytes.
MAX_MEMBER_BYTES = 64 << 20


class SampleError(Rejection):
    """A sample whose members are missing or malformed (reason `corrupt-sample`)."""

    def __init__(self, detail: str) -> None:
        super().__init__("corrupt-sample", detail)


class OversizedMember(SampleError, tarfile.TarError):
    """A tar member claiming more than MAX_MEMBER_BYTES: the rest of the shard is not read.

    A TarError too, so every reader that already treats an unreadable shard as one bad shard does so here.
    """


def wanted_member(name: str) -> bool:
    """The member filter for tar readers: nothing else in a shard is ever read."""
    return name.endswith(MEMBERS)


def metadata(identity: dict[str, Any], info: dict[str, Any], labels: str = "grade") -> dict[str, Any]:
    """The sample's JSON: its identity (the META_KEYS) and the preprocessing facts. In a quality set the
    identity's class is a quality class: it goes under `quality`, and `grade` (unknown) is null."""
    missing = set(META_KEYS) - set(identity)
    if missing:
        raise ValueError(f"sample metadata lacks {sorted(missing)}")
    meta = {k: identity[k] for k in META_KEYS}
    if labels == QUALITY:
        meta["quality"], meta["grade"] = meta["grade"], None
    return {**meta, **info}


def members(key: str, jpeg: bytes, grade: int | None, meta: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(member name, bytes) in the order they are written to the tar."""
    out = [(f"{key}.{IMAGE}", jpeg)]
    if grade is not None:
        out.append((f"{key}.{GRADE}", str(grade).encode()))
    out.append((f"{key}.{META}", json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()))
    return out


def image_of(parts: dict[str, bytes]) -> bytes:
    """The stored JPEG; SampleError if the sample has none."""
    data = parts.get(IMAGE)
    if not data:
        raise SampleError(f"no .{IMAGE} member")
    return data


def grade_of(parts: dict[str, bytes], classes: int = NUM_GRADES) -> int | None:
    """The class in `.cls` (None when unlabelled); SampleError unless it is 0..classes-1 (a grade 0-4
    by default; a quality set's reader passes its 3 classes)."""
    raw = parts.get(GRADE)
    if raw is None:
        return None
    what = "grade" if classes == NUM_GRADES else "quality class"
    try:
        grade = int(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise SampleError(f".{GRADE} is {raw[:20]!r}, not a {what}") from None
    if not 0 <= grade < classes:
        raise SampleError(f".{GRADE} is {grade}, not a {what} 0-{classes - 1}")
    return grade


def meta_of(parts: dict[str, bytes]) -> dict[str, Any]:
    """The parsed `.json` ({} when absent); SampleError when it is not a JSON object."""
    raw = parts.get(META)
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise SampleError(f".{META} is not valid JSON") from None
    if not isinstance(meta, dict):
        raise SampleError(f".{META} is not a JSON object")
    return meta


def sample_size(jpeg: bytes, max_pixels: int = MAX_SAMPLE_PIXELS) -> tuple[int, int]:
    """(width, height) of a stored image from its header; CodecError `too-large` above max_pixels."""
    width, height = codec.read_size(jpeg)
    if width * height > max_pixels:
        raise codec.CodecError("too-large", f"{width}x{height} exceeds {max_pixels} pixels")
    return width, height


def decode_sample(jpeg: bytes, max_pixels: int = MAX_SAMPLE_PIXELS) -> np.ndarray:
    """A stored image as RGB uint8, the header checked first: every decode of shard data goes through here.

    CodecError (a Rejection) for anything that is not a JPEG of at most max_pixels pixels.
    """
    sample_size(jpeg, max_pixels)
    return codec.decode(jpeg)[0]


def read_samples(source: Path | BinaryIO, unexpected: Callable[[str], None] | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per sample of a shard (a path or a binary stream), in tar order.

    Members other than MEMBERS are not read; `unexpected(name)` hears of each. OversizedMember when
    a member's header claims more than MAX_MEMBER_BYTES (its data is never read).
    """
    key: str | None = None
    parts: dict[str, bytes] = {}
    tar = tarfile.open(source, "r|") if isinstance(source, Path) else tarfile.open(fileobj=source, mode="r|")
    with tar:
        for member in tar:
            if not member.isfile() or not wanted_member(member.name):
                if unexpected is not None:
                    unexpected(member.name)
                continue
            if member.size > MAX_MEMBER_BYTES:
                raise OversizedMember(f"member {member.name[:80]!r} claims {member.size} bytes (over {MAX_MEMBER_BYTES})")
            k, _, ext = member.name.rsplit("/", 1)[-1].partition(".")
            if key is not None and k != key:
                yield key, parts
                parts = {}
            key = k
            parts[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]
    if key is not None:
        yield key, parts
