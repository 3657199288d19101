"""Memory a burst of large photos leaves behind, handed back to the operating system when idle.

glibc keeps freed memory in its arenas (one per thread that allocated: the preprocessing threads
decode tens of MB per photo), so a server's RSS after a burst stays at the burst's peak.
`malloc_trim(0)` returns the free pages of every arena; it runs off the event loop, a moment after
the last request is answered. Elsewhere (macOS, musl) there is no such call and this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
from collections.abc import Callable

IDLE_S = 0.2  # how long the service must stay idle before memory is trimmed


def _find_trim() -> Callable[[], int] | None:
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        fn = ctypes.CDLL("libc.so.6").malloc_trim
    except (ValueError, OSError, AttributeError):  # not glibc, no confstr name, no such symbol
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: int(fn(0))


TRIM = _find_trim()


class Trimmer:
    """`idle()` when the service has nothing in progress; trims once it stayed so for IDLE_S."""

    def __init__(self, busy: Callable[[], bool]) -> None:
        self.busy = busy
        self.trims = 0
        self._timer: asyncio.TimerHandle | None = None

    def idle(self) -> None:
        if TRIM is None or self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(IDLE_S, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if not self.busy() and TRIM is not None:
            self.trims += 1
            loop.run_in_executor(None, TRIM)
