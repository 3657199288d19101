"""Build planned shards on a Dask cluster: an existing one (`--scheduler`) or a LocalCluster.

Workers only build (`build_shard` writes `*.tar.tmp` on the shared filesystem); the parent still
commits each shard and writes the manifest through the same `finished` callback as the process
pool, so the output is byte-identical and resume behaves the same. A worker lost mid-run (SIGKILL,
node failure) costs only the shards it held: the scheduler reruns them elsewhere, and a rerun
rewrites the same bytes. Each future is released once committed, so a worker lost later never
makes the scheduler rebuild (and leave behind) a shard that is already final. A shard Dask gives
up on (its workers keep dying) is built input by input in this process's own workers, where the
input that kills them is isolated and rejected, as on the process pool.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sightx.errors import SightXError
from sightx.parallel.pool import single_threaded
from sightx.parallel.supervise import say
from sightx.parallel.workers import run_job
from sightx.shard.local import isolate, sources
from sightx.shard.plan import ShardTask
from sightx.shard.task import BuildOptions, ShardResult, build_shard
from sightx.sources import Source

EXECUTORS = ("pool", "dask", "dask-local")
CONNECT_TIMEOUT_S = 5  # an unreachable scheduler is an error after this, never a hang
WORKERS_TIMEOUT_S = 30  # a reachable scheduler with no worker at all
RETRIES = 2  # per shard, for errors a worker raises (a lost worker is rescheduled regardless)


class DaskError(SightXError):
    """A cluster problem the user must fix (no package, no scheduler, a worker that cannot see the files): one line."""


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise DaskError("the dask executors need Dask distributed: pip install 'sightx[dask]' (or: pip install distributed)") from None
    return distributed


def require_dask() -> None:
    """DaskError (one line, naming the install) unless Dask distributed can be imported."""
    _distributed()


def preflight(source: Source, executor: str, scheduler: str | None) -> None:
    """What can be refused before the output folder is touched: the package, the scheduler option, a streamed source."""
    if executor not in EXECUTORS:
        raise DaskError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if (executor == "dask") != (scheduler is not None):
        raise DaskError("--executor dask needs --scheduler tcp://HOST:8786 (and --scheduler needs --executor dask)")
    if executor == "pool":
        return
    _distributed()
    if not source.random_access:
        raise DaskError(
            f"{source} is read as one stream and cannot be split across Dask workers: "
            "shard the split parts (train.zip.001...) instead, or use --executor pool"
        )


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int) -> Iterator[Any]:
    """A Client to `scheduler`, or to a LocalCluster of `workers` single-threaded processes."""
    distributed = _distributed()
    if scheduler is None:
        cluster = distributed.LocalCluster(
            n_workers=workers, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        )
        with cluster, distributed.Client(cluster) as client:
            yield client
        return
    try:
        client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as e:
        raise DaskError(f"cannot reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT_S}s: {type(e).__name__}") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        except TimeoutError:
            raise DaskError(
                f"the Dask scheduler at {scheduler} has no worker after {WORKERS_TIMEOUT_S}s: start some with `dask worker {scheduler}`"
            ) from None
        yield client


def _paths(source: Source) -> list[str]:
    """The files and folders a random-access source's description names (a folder, a zip, its parts)."""
    found: list[str] = []
    for arg in source.describe():
        found += [a for a in (arg if isinstance(arg, tuple) else (arg,)) if isinstance(a, str)]
    return found


def _probe(source: Source, out: str) -> str | None:
    """On a worker: None when it can open the source and write `out`, else what it cannot do."""
    for path in _paths(source):
        if not os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0)):
            return f"cannot read {path}"
    try:
        type(source)(*source.describe())
    except (SightXError, OSError) as e:
        return f"cannot open {source}: {e}"
    probe = Path(out) / f".sightx-write-probe-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"\n")  # one byte: a full disk or quota fails here too
        probe.unlink()
    except OSError as e:
        return f"cannot write to {out}: {e.strerror or e}"
    return None


def _check_workers(client: Any, build: BuildOptions) -> None:
    """Every worker connected now must read the source and write the output, before any shard is built."""
    answers = client.run(_probe, build.source, build.out, on_error="return")
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            answer = f"probe failed: {type(answer).__name__}: {answer}"
        if answer:
            raise DaskError(f"dask worker {worker}: {answer}")


def _build_on_worker(task: ShardTask, build: BuildOptions) -> ShardResult:
    """One shard on a worker, run as every worker runs a job (`run_job`: the test fault hook's one
    call site, for the Dask executors too); an OS error (a worker that joined later and cannot see
    the files) names that worker."""
    single_threaded()
    try:
        result: ShardResult = run_job(build_shard, (task, build), sources(task))
        return result
    except OSError as e:
        from distributed import get_worker

        raise DaskError(f"dask worker {get_worker().address}: {e.strerror or e}: {e.filename or build.out}") from None


def execute_dask(
    todo: list[ShardTask],
    build: BuildOptions,
    scheduler: str | None,
    workers: int,
    tick: Callable[[int, int], None],
    finished: Callable[[ShardResult], None],
) -> None:
    """Build `todo` (largest first) on Dask; `finished` commits each result in the parent as it arrives.

    A shard whose workers keep dying (Dask gives up after `distributed.scheduler.allowed-failures`
    deaths: KilledWorker) is built at the end input by input on spawn workers in this process
    (`local.isolate`): on a cluster a death also fails the tasks that merely shared the worker,
    so only a process that holds one input at a time can name the input that kills it."""
    gave_up: list[ShardTask] = []
    with _client(scheduler, workers) as client:
        info = client.scheduler_info()
        dashboard = client.dashboard_link if "dashboard" in info.get("services", {}) else "off (pip install bokeh to see it)"
        print(f"dask: scheduler {client.scheduler.address}, {len(info['workers'])} worker(s), dashboard {dashboard}", file=sys.stderr)
        _check_workers(client, build)
        run_id = uuid.uuid4().hex[:8]  # keys unique per run: two runs never share a result on one cluster
        futures = [
            client.submit(_build_on_worker, task, build, key=f"sightx-{task.name}-{run_id}", retries=RETRIES, pure=False) for task in todo
        ]
        tasks = {future.key: task for future, task in zip(futures, todo, strict=True)}
        completed = _distributed().as_completed(futures)
        del futures  # as_completed holds them; each is released below once committed
        for future in completed:
            task = tasks.pop(future.key)
            try:
                result: ShardResult = future.result()
            except _distributed().KilledWorker as e:
                say(f"dask gave up on {task.name} after {e.allowed_failures + 1} worker death(s); its inputs are run one by one at the end")
                gave_up.append(task)
                continue
            finally:
                future.release()
            tick(result.count + len(result.rejects), len(result.rejects))
            finished(result)
    if gave_up:
        isolate(gave_up, build, workers, tick, finished)
