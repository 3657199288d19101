"""A read-only, seekable file over byte-split parts (train.zip.001, .002, ...), so zipfile can read
the archive they make without joining them on disk. Parts are files or any seekable file objects
(a stored member of the competition zip is a window of the outer file: an opener and an offset)."""

from __future__ import annotations

import bisect
import io
from collections.abc import Callable, Sequence
from typing import BinaryIO


class ConcatFile(io.RawIOBase):
    def __init__(self, sizes: Sequence[int], openers: Sequence[Callable[[], BinaryIO]], offsets: Sequence[int] | None = None) -> None:
        super().__init__()
        self._sizes = list(sizes)
        self._openers = list(openers)
        self._offsets = list(offsets or [0] * len(self._sizes))  # where each part's bytes start in what its opener opens
        self._files: dict[int, BinaryIO] = {}
        self._starts = [sum(self._sizes[:i]) for i in range(len(self._sizes))]
        self._size = sum(self._sizes)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            i = bisect.bisect_right(self._starts, self._pos) - 1  # the last part starting at or before pos: never an empty one
            f = self._files.get(i) or self._files.setdefault(i, self._openers[i]())
            f.seek(self._offsets[i] + self._pos - self._starts[i])
            want = min(len(view) - done, self._starts[i] + self._sizes[i] - self._pos)
            chunk = f.read(want)
            if not chunk:
                break
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
            self._pos += len(chunk)
        return done

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        super().close()
