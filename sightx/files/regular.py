"""Reading a file that must be a regular file: a FIFO would block the reader forever, a folder or a
device is no input, and a dangling symlink or a loop says nothing about what was meant.

`not_a_file` says what a path is from stat alone, before anything opens it; `read_regular` opens
only a regular file (and checks again on the open descriptor, so a path swapped for a FIFO in
between is refused, never waited on).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from sightx.errors import SightXError


class NotARegularFile(SightXError):
    """A path that is not a regular file: `what` says what it is (a FIFO, a folder, a symlink loop, ...)."""

    def __init__(self, path: Path | str, what: str) -> None:
        super().__init__(f"{path}: not a regular file ({what})", "not-a-file")
        self.what = what


def not_a_file(path: Path) -> str | None:
    """What `path` is when it is not a readable regular file (reading a FIFO would block forever), else None."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symlink loop"
        return "a dangling symlink" if path.is_symlink() else (e.strerror or str(e))
    return _what(mode)


def _what(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"


def read_regular(path: Path) -> bytes:
    """The bytes of `path`; NotARegularFile when it is anything but a regular file
    (a symlink loop or a dangling one included), decided before it is opened; other OSErrors
    (FileNotFoundError, PermissionError) as open and read raise them."""
    try:
        what = _what(os.stat(path).st_mode)
    except OSError as e:
        if e.errno != errno.ELOOP and not path.is_symlink():
            raise  # missing, no permission: as open would say
        what = not_a_file(path)
    if what is not None:
        raise NotARegularFile(path, what)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO swapped in since the stat: no wait
    try:
        what = _what(os.fstat(fd).st_mode)
        if what is not None:
            raise NotARegularFile(path, what)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)
