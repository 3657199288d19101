"""Numbered WebDataset tars, as a user's own conversion script would write them."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


class TarOut:
    """Samples (their (member name, bytes) lists) into out/{prefix}{n:05d}.tar, `per_shard` samples each."""

    def __init__(self, out: Path, per_shard: int, prefix: str = "") -> None:
        self.out, self.per_shard, self.prefix = out, per_shard, prefix
        self.count = 0
        self.tar: tarfile.TarFile | None = None

    def add(self, members: list[tuple[str, bytes]]) -> None:
        if self.count % self.per_shard == 0:
            self.close()
            self.tar = tarfile.open(self.out / f"{self.prefix}{self.count // self.per_shard:05d}.tar", "w")
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            self.tar.addfile(info, io.BytesIO(data))  # type: ignore[union-attr]  # opened above
        self.count += 1

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            self.tar = None

    def __enter__(self) -> TarOut:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
