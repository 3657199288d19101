"""The reading thread: order kept, memory bounded, errors raised where they happened, and the thread
gone when its consumer stops early."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from sightx.parallel.read_ahead import ahead


def test_items_come_in_order_and_never_more_than_depth_ahead() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(50):
            produced.append(i)
            yield i

    seen = []
    for i in ahead(items(), depth=2):
        time.sleep(0.002)
        assert len(produced) - len(seen) <= 2 + 2  # queued, being read, and the one just handed over
        seen.append(i)
    assert seen == list(range(50))


def test_an_error_while_reading_is_raised_at_its_item() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for i in ahead(items(), depth=4):
            got.append(i)
    assert got == [1, 2]


def test_a_consumer_that_stops_early_stops_the_thread_and_closes_the_source() -> None:
    closed = threading.Event()

    def items() -> Iterator[int]:
        try:
            yield from range(10**9)
        finally:
            closed.set()

    before = threading.active_count()
    reader = ahead(items(), depth=3)
    assert next(reader) == 0
    reader.close()
    assert closed.wait(5) and threading.active_count() == before
