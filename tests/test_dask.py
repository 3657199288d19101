"""The Dask executors against real schedulers and worker processes on loopback."""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import signal
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from outputs import stable_outputs

from sightx.cli import shard as shard_cli
from sightx.contracts import manifest as mf
from sightx.contracts.rejects import FILE as REJECTS
from sightx.image.preprocess import PreprocessOptions
from sightx.parallel.faults import TEST_FAULT_ENV
from sightx.shard import ShardOptions, run
from sightx.shard.executors import DaskError
from sightx.synth.generate import SynthOptions, generate

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(60)


def _opts(**kw: object) -> ShardOptions:
    base: dict = dict(preprocess=PreprocessOptions(size=96, quality=90), shard_size=1, val_fraction=0.25, seed=3, workers=1, progress=False)
    return ShardOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    generate(root, SynthOptions(n=12, seed=5, sizes=((640, 427),), workers=1, progress=False, balanced=True))
    return root / "train"


@pytest.fixture(scope="module")
def reference(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("pool")
    run(raw, out, _opts())
    return stable_outputs(out)


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as c:
        yield c


def test_dask_local_is_byte_identical_to_the_pool(raw: Path, reference: dict[str, bytes], tmp_path: Path) -> None:
    m = run(raw, tmp_path, _opts(executor="dask-local", workers=2))
    assert m["run"]["built_shards"] == len(m["shards"]) > 4
    assert stable_outputs(tmp_path) == reference
    again = run(raw, tmp_path, _opts(executor="dask-local", workers=2))
    assert again["run"]["resumed_shards"] == len(m["shards"]) and again["run"]["built_shards"] == 0


def test_unreachable_scheduler_fails_fast_in_one_line(raw: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    start = time.monotonic()
    result = CliRunner().invoke(
        shard_cli, [str(raw), str(tmp_path), "--executor", "dask", "--scheduler", f"tcp://127.0.0.1:{port}", "--quiet"]
    )
    assert time.monotonic() - start < 15
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in lines[0]


def test_dask_needs_a_scheduler_and_a_stream_is_refused(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(DaskError, match="needs --scheduler"):
        run(raw, tmp_path, _opts(executor="dask"))
    with pytest.raises(DaskError, match="needs --scheduler"):
        run(raw, tmp_path, _opts(scheduler="tcp://127.0.0.1:8786"))
    tgz = tmp_path / "train.tar.gz"
    subprocess.run(["tar", "czf", str(tgz), "-C", str(raw.parent), "train"], check=True)
    labels = str(raw.parent / "trainLabels.csv")
    with pytest.raises(DaskError, match="split parts .* or use --executor pool"):
        run(tgz, tmp_path / "out", _opts(executor="dask-local", labels=labels))
    assert not (tmp_path / "out").exists()  # refused before the output folder is touched


def test_worker_killed_mid_run_costs_only_its_shards(raw: Path, reference: dict[str, bytes], tmp_path: Path, cluster: object) -> None:
    address = cluster.scheduler_address  # type: ignore[attr-defined]
    errors: list[BaseException] = []

    def shard() -> None:
        try:
            run(raw, tmp_path, _opts(executor="dask", scheduler=address))
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    with distributed.Client(address) as client:
        pids = client.run(os.getpid)
        thread = threading.Thread(target=shard)
        thread.start()
        deadline = time.monotonic() + 30
        victim = None
        while victim is None and time.monotonic() < deadline and thread.is_alive():
            busy = [w for w, keys in client.processing().items() if any(str(k).startswith("sightx-") for k in keys)]
            victim = busy[0] if busy else None
            time.sleep(0.005)
        assert victim is not None and thread.is_alive(), "the run finished before a worker could be killed"
        os.kill(pids[victim], signal.SIGKILL)
        thread.join(45)
        assert not thread.is_alive() and not errors, errors
        client.wait_for_workers(2, timeout=20)  # the nanny restarted the killed worker
        assert set(client.run(os.getpid).values()) != set(pids.values())
    assert stable_outputs(tmp_path) == reference


def _no_file_writes() -> None:
    """On a worker: every write to a file fails with EFBIG (a quota of 0 bytes, enforced by the kernel)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error from write(), not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def test_worker_that_cannot_write_the_output_is_one_line(raw: Path, tmp_path: Path) -> None:
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as c:
        with distributed.Client(c) as client:
            victim = sorted(client.scheduler_info()["workers"])[1]
            client.run(_no_file_writes, workers=[victim])
        with pytest.raises(DaskError) as e:
            run(raw, tmp_path, _opts(executor="dask", scheduler=c.scheduler_address))
    assert str(e.value) == f"dask worker {victim}: cannot write to {tmp_path}: File too large"
    assert not list(tmp_path.glob("*.tar*"))  # refused before any shard was built


def test_an_input_that_kills_every_worker_it_meets_is_rejected_and_the_rest_written(
    raw: Path, reference: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dask reruns a task whose worker died and gives up after `allowed-failures` + 1 deaths (1 here,
    to keep the test short; then a shard that merely shared the dying worker is given up on too):
    those shards are built input by input in the parent's own workers, the killer is rejected and
    every other shard, the innocent ones included, is the clean run's."""
    import dask

    victim = sorted(name for name in reference if name.startswith("train-"))[1]
    with tarfile.open(fileobj=io.BytesIO(reference[victim])) as t:
        key = t.getnames()[0].rsplit(".", 1)[0]
        source = json.loads(t.extractfile(f"{key}.json").read())["source"]  # type: ignore[union-attr]
    monkeypatch.setenv(TEST_FAULT_ENV, f"kill {source}")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        m = run(raw, tmp_path, _opts(executor="dask-local", workers=2))
    got = stable_outputs(tmp_path)
    rejects = list(csv.reader(io.StringIO(got.pop(REJECTS).decode())))
    assert [r for r in rejects if r[2] == "decoder-crash"] == [[source, key, "decoder-crash", _CRASH_DETAIL]]
    assert m["complete"] and m["summary"]["rejected_by_reason"].get("decoder-crash") == 1
    with tarfile.open(tmp_path / victim) as t:
        assert t.getnames() == []  # its only sample (one per shard here) is the killer's
    assert {n: b for n, b in got.items() if n not in (victim, mf.MANIFEST)} == {
        n: b for n, b in reference.items() if n not in (victim, mf.MANIFEST, REJECTS)
    }


_CRASH_DETAIL = "the worker process died (SIGKILL) on this input, 2 times"
