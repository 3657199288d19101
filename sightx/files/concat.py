"""Read-only, seekable files made of other bytes: the byte-split parts of a zip read as one file,
without joining them on disk. Standard library only: the doctor uses it in a bare interpreter too."""

from __future__ import annotations

import bisect
import io
from collections.abc import Callable, Sequence
from typing import BinaryIO


class SeekableReader(io.RawIOBase):
    """Position bookkeeping of a read-only random-access file of `size` bytes; subclasses read."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:  # as a real file does: zipfile relies on it for files shorter than an end record
            raise OSError(f"negative seek position {base + offset}")
        self.pos = base + offset
        return self.pos


class ConcatFile(SeekableReader):
    """The concatenation of parts, each opened on first use. A part is any seekable file its opener
    returns, starting at its offset there (a stored member of the competition zip is a window of the
    outer file)."""

    def __init__(self, sizes: Sequence[int], openers: Sequence[Callable[[], BinaryIO]], offsets: Sequence[int] | None = None) -> None:
        super().__init__(sum(sizes))
        self._sizes = list(sizes)
        self._openers = list(openers)
        self._offsets = list(offsets or [0] * len(self._sizes))
        self._files: dict[int, BinaryIO] = {}
        self._starts = [sum(self._sizes[:i]) for i in range(len(self._sizes))]

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self.pos < self.size:
            i = bisect.bisect_right(self._starts, self.pos) - 1  # the last part starting at or before pos: never an empty one
            f = self._files.get(i) or self._files.setdefault(i, self._openers[i]())
            f.seek(self._offsets[i] + self.pos - self._starts[i])
            chunk = f.read(min(len(view) - done, self._starts[i] + self._sizes[i] - self.pos))
            if not chunk:
                break  # the part shrank under us: a short read, reported by the zip reader
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
            self.pos += len(chunk)
        return done

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        super().close()
