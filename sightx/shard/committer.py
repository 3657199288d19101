"""Make each finished shard final and listed in the manifest within about a second, on a thread of its own.

A shard counts for a resume only once it is fsynced, renamed and listed in the manifest. Doing that
on the executor's loop ties it to that loop: a loop busy with progress messages, or blocked waiting
for the next result (a long shard, a Dask future), leaves finished shards unlisted, and a kill then
throws them away. Here the executor only hands results over; this thread commits each at once
(its fsync overlaps the next build) and rewrites the manifest when `every_s` has passed since the
last write, or `every_s` after the first unlisted commit when nothing else arrives, so small shards
do not pay a manifest write each and none waits longer than about `every_s`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from types import TracebackType

from sightx.shard.task import ShardResult


class Committer:
    """`submit` results from any thread; `close` waits until every submitted one is committed."""

    def __init__(self, commit: Callable[[ShardResult], None], record: Callable[[], None], every_s: float) -> None:
        self._commit, self._record, self._every_s = commit, record, every_s
        self._queue: queue.SimpleQueue[ShardResult | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sightx-committer", daemon=True)
        self._thread.start()

    def submit(self, result: ShardResult) -> None:
        self._raise()
        self._queue.put(result)

    def close(self) -> None:
        """Commit everything submitted (not necessarily listed: the caller writes the manifest next)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def __enter__(self) -> Committer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        listed_at = time.monotonic()
        unlisted = False
        try:
            while True:
                wait = max(0.0, listed_at + self._every_s - time.monotonic()) if unlisted else None
                try:
                    result = self._queue.get(timeout=wait)
                except queue.Empty:
                    result = None
                else:
                    if result is None:
                        return
                    self._commit(result)
                    unlisted = True
                if unlisted and time.monotonic() - listed_at >= self._every_s:
                    self._record()
                    listed_at, unlisted = time.monotonic(), False
        except BaseException as e:  # a full disk: raised in the caller's thread at its next submit or close
            self._error = e
