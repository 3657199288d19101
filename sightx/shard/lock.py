"""One sightx-shard per output folder: an advisory lock on `OUT/.sightx-shard.lock`.

flock(2) locks belong to the open file and vanish with the process that holds them, so a lock left
by a killed run (its pid still in the file) is free and simply taken over; the pid is only there to
name the holder in the message. The file is removed on release; a run that locked a file just being
removed notices (the path no longer names its file) and locks again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sightx.errors import SightXError

LOCK = ".sightx-shard.lock"


class LockedError(SightXError):
    """Another run holds the output folder."""


@contextlib.contextmanager
def hold(folder: Path) -> Iterator[None]:
    """Hold the folder's lock for the block; LockedError at once if another live process holds it."""
    path = folder / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(f"another sightx-shard (pid {holder}) is writing to {folder}; wait for it or stop it") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the file we locked was removed by the previous holder: lock the current one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked, so nobody else holds a lock on this file
        os.close(fd)
