"""Run one measurement in a fresh process, so its peak memory and warm state are its own.

ru_maxrss of a process and of its waited-for children is the peak RSS of the largest single
process: the figure that decides how many workers fit in RAM.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from sightx.bench.options import BenchError
from sightx.errors import SightXError, describe

T = TypeVar("T")


def peak_rss_mb() -> float:
    """Largest RSS of this process and of every child it has waited for, in MB."""
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    per_mb = 1e6 if sys.platform == "darwin" else 1e3  # bytes on macOS, KiB on Linux
    return round(peak / per_mb, 1)


def _child(conn: Any, fn: Callable[[T], dict[str, Any]], arg: T) -> None:
    try:
        result = fn(arg)
        conn.send(("ok", {**result, "peak_rss_mb": peak_rss_mb()}))
    except Exception as e:  # reported by the parent as this measurement's error
        conn.send(("error", str(e) if isinstance(e, SightXError) else describe(e)))
    finally:
        conn.close()


def isolated(fn: Callable[[T], dict[str, Any]], arg: T) -> dict[str, Any]:
    """fn(arg) in a new spawn process (not a daemon: it may start its own pool), plus peak_rss_mb."""
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, arg))
    proc.start()
    send.close()
    try:
        status, payload = receive.recv()
    except EOFError:
        proc.join()
        raise BenchError(f"measurement process died (exit code {proc.exitcode})") from None
    finally:
        receive.close()
    proc.join()
    if status == "error":
        raise BenchError(payload)
    return payload
