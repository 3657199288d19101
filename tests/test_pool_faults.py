"""sightx-predict and sightx-explore when a worker dies: real spawn workers, a real SIGKILL on a
chosen input (the SIGHTX_TEST_FAULT hook, fired where a worker starts a job), and the clean in-process
run each faulty run is compared with."""

from __future__ import annotations

import csv
import dataclasses
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sightx.cli import predict as predict_cli
from sightx.errors import Rejection
from sightx.explore import ExploreOptions, explore
from sightx.parallel import workers as wk
from sightx.parallel.faults import TEST_FAULT_ENV
from sightx.parallel.pool import default_workers, init_worker
from sightx.parallel.supervise import bounded_map, crashed, supervised
from sightx.synth.generate import SynthOptions, generate

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(default_workers() < 2, reason="worker pools are capped at the cores: one core runs in-process"),
]

VICTIM = "14_left.jpeg"  # one of the six photos below


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small synthetic photos with their labels (Kaggle layout: train/ and trainLabels.csv)."""
    root = tmp_path_factory.mktemp("six")
    generate(root, SynthOptions(n=6, seed=3, sizes=((640, 427),), balanced=True, progress=False))
    assert (root / "train" / VICTIM).exists()
    return root


def _predict(inputs: list[Path], checkpoint: Path, out: Path, workers: int) -> str:
    args = [*map(str, inputs), "--checkpoint", str(checkpoint), "--out", str(out), "--workers", str(workers), "--quiet", "--device", "cpu"]
    res = CliRunner().invoke(predict_cli, args)
    assert res.exit_code == 0, res.output
    return out.read_text()


@pytest.fixture(scope="module")
def clean_csv(photos: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The predictions of an in-process run (no worker to die): what the faulty runs are compared with."""
    return _predict([photos / "train"], tiny_checkpoint, tmp_path_factory.mktemp("clean") / "pred.csv", workers=1)


def _rows(text: str) -> dict[str, dict[str, str]]:
    return {r["image"]: r for r in csv.DictReader(io.StringIO(text))}


def test_predict_records_a_photo_that_kills_its_worker_twice_as_decoder_crash_and_grades_the_rest(
    photos: Path, tiny_checkpoint: Path, clean_csv: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TEST_FAULT_ENV, f"kill {VICTIM}")
    got, clean = _rows(_predict([photos / "train"], tiny_checkpoint, tmp_path / "pred.csv", workers=2)), _rows(clean_csv)
    victim = VICTIM.split(".")[0]
    assert list(got) == list(clean) and len(got) == 6
    assert got[victim]["level"] == "" and got[victim]["error"].startswith("decoder-crash: ") and "SIGKILL" in got[victim]["error"]
    assert clean[victim]["level"] != "" and not clean[victim]["error"]
    assert {k: r for k, r in got.items() if k != victim} == {k: r for k, r in clean.items() if k != victim}


def test_predict_from_a_streamed_archive_rejects_the_member_that_kills_its_worker(
    photos: Path, tiny_checkpoint: Path, clean_csv: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same through a .tar.gz, read in one pass by the parent and fed to the workers."""
    archive = tmp_path / "test.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for photo in sorted((photos / "train").iterdir()):
            tar.add(photo, photo.name)
    monkeypatch.setenv(TEST_FAULT_ENV, f"kill {VICTIM}")
    got, clean = _rows(_predict([archive], tiny_checkpoint, tmp_path / "pred.csv", workers=2)), _rows(clean_csv)
    victim = VICTIM.split(".")[0]
    assert got[victim]["error"].startswith("decoder-crash: ") and got[victim]["level"] == ""
    assert {k: r for k, r in got.items() if k != victim} == {k: r for k, r in clean.items() if k != victim}


def test_a_predict_worker_that_dies_once_costs_a_retry_and_changes_no_row(
    photos: Path, tiny_checkpoint: Path, clean_csv: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(TEST_FAULT_ENV, f"kill-once {VICTIM} {marker}")
    got = _predict([photos / "train"], tiny_checkpoint, tmp_path / "pred.csv", workers=2)
    assert marker.exists(), "the fault never fired"
    assert got == clean_csv


def test_explore_counts_a_photo_that_kills_its_worker_as_unreadable_with_its_reason(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opts = ExploreOptions(per_grade=1, sample=0, workers=2, progress=False)
    clean = explore(photos, tmp_path / "clean", dataclasses.replace(opts, workers=1))["properties"]
    monkeypatch.setenv(TEST_FAULT_ENV, f"kill {VICTIM}")
    props = explore(photos, tmp_path / "faulty", opts)["properties"]
    assert clean["unreadable"] == 0 and clean["measured"] == 6
    assert props["sampled"] == 6 and props["measured"] == 5 and props["unreadable"] == 1
    assert props["failed_by_reason"] == {"decoder-crash": 1}
    [failed] = props["failed"]
    assert failed["image"] == VICTIM and "SIGKILL" in failed["detail"]
    assert VICTIM not in {w["image"] for w in props["worst"]}  # never decoded again here, for a thumbnail


def _twice(x: int) -> int:
    return 2 * x


def test_bounded_map_gives_results_in_input_order_reading_no_further_ahead_than_its_bound() -> None:
    """Order and the read-ahead bound its streamed callers rely on (memory: a few inputs per worker)."""
    read: list[int] = []

    def items() -> Iterator[int]:
        for i in range(40):
            read.append(i)
            yield i

    def never(item: int, crash: Rejection) -> int:
        raise AssertionError(f"no worker dies here: {item} {crash}")

    out = []
    for value in bounded_map(_twice, items(), 2, never, name=str, per_worker=3):
        out.append(value)
        assert len(read) <= len(out) + 2 * 3
    assert out == [2 * i for i in range(40)]


def test_a_job_that_cannot_be_pickled_fails_its_caller_and_the_pool_still_closes() -> None:
    """Jobs are pickled before the sending thread takes them: the error reaches the caller, never a
    worker that waits forever for a job that never came."""
    pool = wk.Workers(1, init_worker)
    try:
        pool.submit(("ok",), _twice, 3)
        pool.submit(("lock",), _twice, threading.Lock())
        events = pool.events()
        assert next(events) == wk.Done(("ok",), 6)
        with pytest.raises(TypeError, match="lock"):
            next(events)
    finally:
        pool.close()


def test_the_supervision_loop_retries_a_death_once_then_gives_the_crash_in_the_item_s_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one loop every caller runs on, unordered: a death that recurs gives `on_crash(item,
    crashed(how))`; one that does not costs a retry and changes no outcome."""
    items = ["a", "b", "c", "d"]
    monkeypatch.setenv(TEST_FAULT_ENV, "kill b")
    got = dict(supervised(str.upper, items, 2, lambda item, crash: str(crash), name=str, limit=2))
    assert got == {"a": "A", "b": str(crashed("SIGKILL")), "c": "C", "d": "D"}
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(TEST_FAULT_ENV, f"kill-once c {marker}")
    assert dict(supervised(str.upper, items, 2, lambda item, crash: str(crash), name=str, limit=2)) == {i: i.upper() for i in items}
    assert marker.exists(), "the fault never fired"
