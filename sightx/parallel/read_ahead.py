"""An iterator pulled on a thread, a few items ahead of its consumer.

Reading an archive member is mostly inflating (zlib and libdeflate release the GIL), so a reading
thread overlaps the decode of the item before it, on a core the decoder leaves idle. The queue is
bounded (memory: `depth` items plus the one being read) and the thread stops when the consumer
does; an error raised while reading is raised to the consumer at the item it belongs to.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")
_END = object()
_POLL_S = 0.1  # how often a thread blocked on a full queue checks that its consumer is still there


def ahead(items: Iterable[T], depth: int) -> Generator[T, None, None]:
    """The items of `items` in order, read up to `depth` (>= 1) ahead on a thread. Closing it waits
    for the item being read to be finished."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, not {depth}")
    slots: queue.Queue[tuple[bool, object]] = queue.Queue(depth)
    stop = threading.Event()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def pull() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put((True, item)):
                    return
            put((True, _END))
        except BaseException as e:  # handed to the consumer, raised there
            put((False, e))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=pull, name="sightx-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = slots.get()
            if not ok:
                assert isinstance(item, BaseException)
                raise item
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
