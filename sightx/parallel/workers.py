"""Spawned worker processes that know which job each holds, so a worker that dies is known with its job.

multiprocessing.Pool loses the job of a worker killed by a signal (a segfault in a decoder, the
OOM killer) and waits for its result forever; concurrent.futures breaks the whole pool without
saying whose job it was. Here each worker has its own pipe and runs the jobs sent to it in order,
so when its process ends, the first job it had not answered is reported `Died` (with the signal),
the others it held go back to the queue, and a fresh worker takes over. Results and progress come back on the same pipes, handled in arrival
order by one `multiprocessing.connection.wait` loop: no message kind waits behind another.
Always `spawn`: the same pickling path on Linux as on macOS.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from typing import Any

from sightx.errors import SightXError
from sightx.parallel import faults

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


def run_job(fn: Callable[..., Any], args: tuple[Any, ...], inputs: tuple[str, ...]) -> Any:
    """A job as every worker runs it (here, and a Dask task in shard/executors.py): fn(*args),
    after the one call of the test fault hook, with the names of the inputs the job reads."""
    faults.maybe_fail(inputs)
    return fn(*args)


def _serve(conn: Connection, initializer: Callable[[], None]) -> None:
    """A worker's life: set up, say ready, then run jobs in the order sent until told to stop (None).
    A thread receives them, so the parent's send never waits for the job running now."""
    global _CONN
    _CONN = conn
    initializer()
    jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_receive_jobs, args=(conn, jobs), daemon=True).start()
    conn.send(("ready", None))
    try:
        while (job := jobs.get()) is not None:
            key, fn, args, inputs = job
            try:
                message = ("done", key, run_job(fn, args, inputs))
            except Exception as e:  # the job's error goes to the parent, which decides
                message = ("failed", key, e)
            try:
                conn.send(message)
            except (EOFError, OSError):
                raise
            except Exception as e:  # an unpicklable value or error: say so instead of dying
                conn.send(("failed", key, RuntimeError(f"cannot send the result of {key!r} back: {type(e).__name__}: {e}")))
    except (EOFError, OSError):
        pass  # the parent is gone (killed): nothing to report to
    # Out now: a spawned child's interpreter shutdown (unloading torch: over a second) would only
    # delay the parent's close, and every result is already sent.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _receive_jobs(conn: Connection, jobs: queue.SimpleQueue[Any]) -> None:
    try:
        while True:
            job = conn.recv()
            jobs.put(job)
            if job is None:
                return
    except (EOFError, OSError):
        jobs.put(None)  # the parent is gone


_Job = tuple[Key, Callable[..., Any], tuple[Any, ...], tuple[str, ...]]  # key, fn, args, the inputs it reads


class _Worker:
    """One process and its pipe. Jobs go out through a sending thread: a job carrying an image
    (a streamed source's) is ~1 MB, which the worker's receiving thread takes a pipe-full at a
    time, each waiting for the GIL while the worker decodes; a send from the parent's own loop
    would stall every other worker until then."""

    def __init__(self, ctx: Any, initializer: Callable[[], None]) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, initializer), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.jobs: deque[_Job] = deque()  # sent, in the order it runs them: the first is running
        self.outbox: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self.sender = threading.Thread(target=self._send, name="sightx-send", daemon=True)
        self.sender.start()

    def send(self, job: _Job | None) -> None:
        """Pickle `job` (None: stop) here, so a job that cannot be pickled fails its caller, and hand
        the bytes to the sending thread; they reach the worker in this order."""
        self.outbox.put(ForkingPickler.dumps(job))
        if job is None:
            self.outbox.put(None)

    def _send(self) -> None:
        while (data := self.outbox.get()) is not None:
            try:
                self.conn.send_bytes(data)
            except Exception:  # it died (or its pipe is closed): its sentinel tells the rest
                return

    def release(self) -> None:
        """After its process has ended: the sending thread out (a send to a dead pipe fails at
        once), then the pipe closed."""
        self.outbox.put(None)
        self.sender.join(5)
        self.conn.close()


class Workers:
    """Up to `n` spawn processes running submitted jobs, each holding at most `depth` (one running,
    the rest next in line: no idle gap between short jobs); `events()` yields what happens to them."""

    def __init__(self, n: int, initializer: Callable[[], None], depth: int = 1) -> None:
        self.n, self.depth = n, depth
        self.initializer = initializer
        self.ctx = mp.get_context("spawn")
        self.pending: deque[_Job] = deque()
        self.workers: list[_Worker] = []
        self.start_failures = 0

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, key: Key, fn: Callable[..., Any], *args: Any, inputs: tuple[str, ...] = ()) -> None:
        """Queue fn(*args); it runs on the next worker with room (FIFO). `inputs`: the names of the
        inputs it reads (where the test fault hook looks)."""
        self.pending.append((key, fn, args, inputs))

    def events(self) -> Iterator[Event]:
        """Until no job is queued or held: results, failures, deaths and progress, as they arrive.
        The caller may submit more jobs in between (a retry)."""
        while self.pending or any(w.jobs for w in self.workers):
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
        for depth in range(1, self.depth + 1):  # the idle workers first, then the next in line
            for w in self.workers:
                if self.pending and w.ready and len(w.jobs) < depth:
                    job = self.pending.popleft()
                    w.send(job)
                    w.jobs.append(job)  # if it dies first, the job is its Died one (or next in line: requeued)

    def _receive(self, w: _Worker) -> Iterator[Event]:
        """Whatever `w` sent (all of it once its process has ended), then its death if it has died:
        the job it was running is `Died`; the ones next in line go back to the queue, uncounted."""
        try:
            while w.conn.poll():
                kind, *rest = w.conn.recv()
                if kind == "ready":
                    w.ready = True
                    self.start_failures = 0
                elif kind == "progress":
                    yield Progress(rest[0])
                else:
                    assert w.jobs and w.jobs[0][0] == rest[0], "results come back in the order sent"
                    w.jobs.popleft()
                    yield Done(*rest) if kind == "done" else Failed(*rest)
                if w.process.is_alive():
                    return  # back to the wait loop
            if w.process.is_alive():
                return
        except (EOFError, OSError):
            pass  # the pipe closed: the process is ending
        w.process.join()
        self.workers.remove(w)
        w.release()
        how = how_it_ended(w.process.exitcode)
        if not w.ready:
            self.start_failures += 1
            if self.start_failures >= START_FAILURES:
                raise WorkerStartError(f"{START_FAILURES} worker processes in a row died while starting (the last: {how})")
        if w.jobs:
            running = w.jobs.popleft()
            self.pending.extendleft(reversed(w.jobs))
            w.jobs.clear()
            yield Died(running[0], how)

    def close(self) -> None:
        """Stop every worker: politely when idle, by force when still busy (an error or Ctrl-C)."""
        for w in self.workers:
            if not w.jobs and w.ready:
                w.send(None)
            else:
                w.process.kill()
        for w in self.workers:
            w.process.join(5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.release()
        self.workers = []
