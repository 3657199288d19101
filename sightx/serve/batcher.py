"""Micro-batching: photos from concurrent requests share model calls on one model instance.

The first photo to arrive opens a batch; it closes at `max_batch` photos or `wait_s` later,
whichever comes first, and runs on the model's own thread, so the event loop keeps reading
uploads meanwhile. Photos that arrive during a model call form the next batch: under load,
batches fill without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], list[R]], executor: Executor, max_batch: int, wait_s: float) -> None:
        self._run = run
        self._executor = executor
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # model calls so far, for tests and metrics

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _collect(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [(item, f) for item, f in batch if not f.cancelled()]  # clients that went away
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._run, [item for item, _ in live])
            except Exception as e:  # the model failed: every photo of the batch gets the error
                for _, f in live:
                    if not f.done():
                        f.set_exception(e)
                continue
            self.batches += 1
            for (_, f), result in zip(live, results):
                if not f.done():
                    f.set_result(result)
