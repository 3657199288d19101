"""Read samples back from a shard without trusting it: only .jpg/.cls/.json members are ever read.

A shard is data: members such as .pyd or .pth could be pickles, and are skipped unread.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

WANTED = (".jpg", ".cls", ".json")


def wanted_member(name: str) -> bool:
    return name.endswith(WANTED)


def read_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per sample, streamed in tar order (WebDataset key convention)."""
    key: str | None = None
    parts: dict[str, bytes] = {}
    with tarfile.open(path, "r|") as tar:
        for member in tar:
            if not member.isfile() or not wanted_member(member.name):
                continue
            k, _, ext = member.name.rsplit("/", 1)[-1].partition(".")
            if key is not None and k != key:
                yield key, parts
                parts = {}
            key = k
            parts[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]
    if key is not None:
        yield key, parts
