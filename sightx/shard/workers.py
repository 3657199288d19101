"""Spawned worker processes that hold one job each, so a worker that dies is known with its job.

multiprocessing.Pool loses the job of a worker killed by a signal (a segfault in a decoder, the
OOM killer) and waits for its result forever; concurrent.futures breaks the whole pool without
saying whose job it was. Here each worker has its own pipe and gets its next job only when idle,
so when its process ends with a job in hand, that job is reported `Died` (with the signal) and a
fresh worker takes over. Results and progress come back on the same pipes, handled in arrival
order by one `multiprocessing.connection.wait` loop: no message kind waits behind another.
Always `spawn`: the same pickling path on Linux as on macOS.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from sightx.errors import SightXError

_CONN: Connection | None = None  # in a worker: the pipe to the parent
Key = tuple[Any, ...]  # names a job in its events


@dataclass(frozen=True)
class Done:
    key: Key
    value: Any


@dataclass(frozen=True)
class Failed:
    """The job raised: `error` is its exception (re-raise it in the parent)."""

    key: Key
    error: BaseException


@dataclass(frozen=True)
class Died:
    """The worker process ended while it held the job."""

    key: Key
    how: str  # "SIGKILL", "SIGSEGV", "exit code 3"


@dataclass(frozen=True)
class Progress:
    payload: Any


Event = Done | Failed | Died | Progress


class WorkerStartError(SightXError):
    """Workers keep dying before they are ready for a job: a broken environment, not a bad input."""


START_FAILURES = 3  # workers in a row that die while starting (one may meet the OOM killer) before giving up


def progress(payload: Any) -> None:
    """In a job: send `payload` to the parent as a Progress event."""
    assert _CONN is not None, "progress() outside a worker"
    _CONN.send(("progress", payload))


def how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def _serve(conn: Connection, initializer: Callable[[], None]) -> None:
    """A worker's life: set up, say ready, then run jobs until told to stop (None)."""
    global _CONN
    _CONN = conn
    initializer()
    conn.send(("ready", None))
    try:
        while True:
            job = conn.recv()
            if job is None:
                return
            key, fn, args = job
            try:
                message = ("done", key, fn(*args))
            except Exception as e:  # the job's error goes to the parent, which decides
                message = ("failed", key, e)
            try:
                conn.send(message)
            except (EOFError, OSError):
                raise
            except Exception as e:  # an unpicklable value or error: say so instead of dying
                conn.send(("failed", key, RuntimeError(f"cannot send the result of {key!r} back: {type(e).__name__}: {e}")))
    except (EOFError, OSError):
        return  # the parent is gone (killed): nothing to report to


class _Worker:
    def __init__(self, ctx: Any, initializer: Callable[[], None]) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, initializer), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.job: tuple[Key, Callable[..., Any], tuple[Any, ...]] | None = None


class Workers:
    """Up to `n` spawn processes running submitted jobs; `events()` yields what happens to them."""

    def __init__(self, n: int, initializer: Callable[[], None]) -> None:
        self.n = n
        self.initializer = initializer
        self.ctx = mp.get_context("spawn")
        self.pending: deque[tuple[Key, Callable[..., Any], tuple[Any, ...]]] = deque()
        self.workers: list[_Worker] = []
        self.start_failures = 0

    def submit(self, key: Key, fn: Callable[..., Any], *args: Any) -> None:
        """Queue fn(*args); it runs on the next idle worker (FIFO)."""
        self.pending.append((key, fn, args))

    @property
    def load(self) -> int:
        """Jobs queued or running."""
        return len(self.pending) + sum(w.job is not None for w in self.workers)

    def events(self) -> Iterator[Event]:
        """Until no job is queued or running: results, failures, deaths and progress, as they arrive.
        The caller may submit more jobs in between (a retry)."""
        while self.pending or any(w.job for w in self.workers):
            self._dispatch()
            by_handle: dict[Any, _Worker] = {}
            for w in self.workers:
                by_handle[w.conn] = by_handle[w.process.sentinel] = w
            for handle in wait(list(by_handle)):
                w = by_handle[handle]
                if w not in self.workers:
                    continue  # both of its handles were ready; handled once
                yield from self._receive(w)

    def _dispatch(self) -> None:
        while self.pending and len(self.workers) < self.n:
            self.workers.append(_Worker(self.ctx, self.initializer))
        for w in self.workers:
            if self.pending and w.ready and w.job is None:
                w.job = self.pending.popleft()
                try:
                    w.conn.send(w.job)
                except OSError:  # it died while idle: the job never reached it
                    self.pending.appendleft(w.job)
                    w.job = None

    def _receive(self, w: _Worker) -> Iterator[Event]:
        """Whatever `w` sent (all of it once its process has ended), then its death if it has died."""
        try:
            while w.conn.poll():
                kind, *rest = w.conn.recv()
                if kind == "ready":
                    w.ready = True
                    self.start_failures = 0
                elif kind == "progress":
                    yield Progress(rest[0])
                else:
                    assert w.job is not None
                    w.job = None
                    yield Done(*rest) if kind == "done" else Failed(*rest)
                if w.process.is_alive():
                    return  # back to the wait loop
            if w.process.is_alive():
                return
        except (EOFError, OSError):
            pass  # the pipe closed: the process is ending
        w.process.join()
        self.workers.remove(w)
        w.conn.close()
        if not w.ready:
            self.start_failures += 1
            if self.start_failures >= START_FAILURES:
                raise WorkerStartError(
                    f"{START_FAILURES} worker processes in a row died while starting (the last: {how_it_ended(w.process.exitcode)})"
                )
        if w.job is not None:
            key = w.job[0]
            w.job = None
            yield Died(key, how_it_ended(w.process.exitcode))

    def close(self) -> None:
        """Stop every worker: politely when idle, by force when still busy (an error or Ctrl-C)."""
        for w in self.workers:
            if w.job is None and w.ready:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
            else:
                w.process.kill()
        for w in self.workers:
            w.process.join(5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()
        self.workers = []
