"""Shard runs whose workers hang or die: real spawn processes, a real SIGKILL on a chosen input
(the SIGHTX_TEST_FAULT hook, fired where a worker starts a job), real kill -9 of a running sightx-shard."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from outputs import stable_outputs

from sightx.contracts import manifest as mf
from sightx.contracts.rejects import FILE as REJECTS
from sightx.image.preprocess import PreprocessOptions
from sightx.parallel.faults import TEST_FAULT_ENV
from sightx.shard import ShardOptions, run

pytestmark = pytest.mark.timeout(180)

SIZE, SHARD_SIZE = 48, 3


def _opts(**kw: object) -> ShardOptions:
    base: dict = dict(preprocess=PreprocessOptions(size=SIZE, quality=90), shard_size=SHARD_SIZE, val_fraction=0.25, seed=4, progress=False)
    return ShardOptions(**{**base, "workers": 1, **kw})


@pytest.fixture(scope="module")
def reference(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean in-process run: what every faulty run is compared with."""
    out = tmp_path_factory.mktemp("clean")
    run(tiny_raw / "train", out, _opts())
    return out


def _members(tar: Path) -> dict[str, bytes]:
    with tarfile.open(tar) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers()}  # type: ignore[union-attr]


def _victim(reference: Path) -> tuple[str, str, str]:
    """An input in the middle of a train shard: (its shard, its source name, its sample key)."""
    shard = "train-000001.tar"
    members = _members(reference / shard)
    key = sorted({name.rsplit(".", 1)[0] for name in members})[1]
    return shard, json.loads(members[f"{key}.json"])["source"], key


def _rejects(out: Path) -> list[dict[str, str]]:
    with open(out / REJECTS, newline="") as f:
        return list(csv.DictReader(f))


def _done(out: Path) -> set[str]:
    try:
        return {s["name"] for s in mf.read(out)["shards"] if s["done"]}
    except (mf.ManifestError, OSError):
        return set()


def _assert_clean_without(out: Path, m: dict, reference: Path, shard: str, source: str, key: str) -> None:
    """`out` is the clean run with exactly one input rejected as decoder-crash: every other shard
    byte-identical, the victim's shard holding the clean one's members but that sample's, in order."""
    crashed = [r for r in _rejects(out) if r["reason"] == "decoder-crash"]
    assert [(r["source"], r["image"]) for r in crashed] == [(source, key)]
    assert "SIGKILL" in crashed[0]["detail"]
    clean = mf.read(reference)
    assert m["complete"] and m["summary"]["written"] == clean["summary"]["written"] - 1
    assert m["summary"]["rejected_by_reason"]["decoder-crash"] == 1
    for rec in clean["shards"]:
        if rec["name"] != shard:
            assert (out / rec["name"]).read_bytes() == (reference / rec["name"]).read_bytes()
    expected = {n: b for n, b in _members(reference / shard).items() if not n.startswith(key + ".")}
    got = _members(out / shard)
    assert list(got) == list(expected) and got == expected
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.spool"))


def test_an_input_that_kills_its_worker_twice_is_rejected_and_the_rest_written(
    tiny_raw: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shard, source, key = _victim(reference)
    monkeypatch.setenv(TEST_FAULT_ENV, f"kill {source}")
    m = run(tiny_raw / "train", tmp_path / "a", _opts(workers=2))

    _assert_clean_without(tmp_path / "a", m, reference, shard, source, key)
    # Deterministic: the same fault gives the same bytes again; a resume keeps the rejection.
    run(tiny_raw / "train", tmp_path / "b", _opts(workers=2))
    assert stable_outputs(tmp_path / "b") == stable_outputs(tmp_path / "a")
    again = run(tiny_raw / "train", tmp_path / "a", _opts(workers=2))
    assert again["run"]["built_shards"] == 0 and again["summary"] == m["summary"]


def test_a_streamed_sample_that_kills_its_worker_twice_is_rejected_and_the_rest_written(
    tiny_raw: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same from a .tar.gz, read in one pass and built sample by sample on the workers."""
    archive = tmp_path / "in" / "train.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for photo in sorted((tiny_raw / "train").iterdir()):
            tar.add(photo, photo.name)
    shutil.copy(tiny_raw / "trainLabels.csv", archive.parent)
    shard, source, key = _victim(reference)
    monkeypatch.setenv(TEST_FAULT_ENV, f"kill {source}")
    m = run(archive, tmp_path / "out", _opts(workers=2))
    _assert_clean_without(tmp_path / "out", m, reference, shard, source, key)


def test_a_worker_that_dies_once_costs_a_retry_and_changes_no_byte(
    tiny_raw: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, source, _ = _victim(reference)
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(TEST_FAULT_ENV, f"kill-once {source} {marker}")
    run(tiny_raw / "train", tmp_path / "out", _opts(workers=2))
    assert marker.exists(), "the fault never fired"
    assert stable_outputs(tmp_path / "out") == stable_outputs(reference)


def test_finished_shards_are_listed_while_the_run_is_still_busy_and_survive_kill_9(tiny_raw: Path, reference: Path, tmp_path: Path) -> None:
    """One input hangs its worker for good; the other worker builds every other (tiny) shard. Each
    must be in the manifest on disk, not only renamed, while the run is still going: the old loop
    listed a shard only when a later one finished, so the last few were never listed."""
    shard, source, _ = _victim(reference)
    planned = {s["name"] for s in mf.read(reference)["shards"]}
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).parent / "sightx-shard"), str(tiny_raw / "train"), str(out), "--size", str(SIZE)]
    cmd += ["--quality", "90", "--shard-size", str(SHARD_SIZE), "--val-fraction", "0.25", "--seed", "4", "--quiet"]
    env = {**os.environ, TEST_FAULT_ENV: f"hang {source}"}
    proc = subprocess.Popen(cmd + ["--workers", "2"], env=env)
    try:
        deadline = time.monotonic() + 120  # a bound on a broken run, not a speed assertion
        while _done(out) != planned - {shard} and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended although one input hangs"
        listed = _done(out)
        assert listed == planned - {shard}, f"finished but not listed: {sorted(planned - {shard} - listed)}"
        assert {p.name for p in out.glob("*.tar")} == listed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    resumed = subprocess.run(cmd + ["--workers", "2"], check=True, capture_output=True, text=True).stdout
    assert f"{len(planned) - 1} shard(s) resumed, 1 built" in resumed
    assert stable_outputs(out) == stable_outputs(reference)
