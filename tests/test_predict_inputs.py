"""sightx-predict on inputs that are not photos: special files get a row and are never opened, one
image id for two photos is refused in one line. Real FIFOs, symlinks and folders."""

from __future__ import annotations

import csv
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from sightx.cli import predict as predict_cli
from sightx.files.regular import NotARegularFile, read_regular


@contextmanager
def writers_for(fifos: list[Path], after: float = 3.0) -> Iterator[None]:
    """Should anything open one of `fifos` to read (and block there for ever), a writer opens and
    closes it after `after` seconds: the reader sees an empty file and the test fails, not hangs."""
    stop = threading.Event()

    def unblock() -> None:
        if stop.wait(after):
            return
        while not stop.wait(0.2):
            for f in fifos:
                try:
                    os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass  # no reader waiting

    t = threading.Thread(target=unblock, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


@pytest.fixture(scope="module")
def photo(tiny_raw: Path) -> bytes:
    return sorted((tiny_raw / "train").glob("*.jpeg"))[0].read_bytes()


def run(args: list[str], checkpoint: Path, out: Path) -> tuple[int, str]:
    base = ["--checkpoint", str(checkpoint), "--workers", "1", "--quiet", "--device", "cpu", "--out", str(out)]
    res = CliRunner().invoke(predict_cli, [*args, *base])
    return res.exit_code, res.output


def test_read_regular_refuses_what_is_not_a_file_without_opening_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.jpeg")
    (tmp_path / "loop.jpeg").symlink_to(tmp_path / "loop.jpeg")
    (tmp_path / "dangling.jpeg").symlink_to(tmp_path / "nowhere")
    (tmp_path / "dir.jpg").mkdir()
    with writers_for([tmp_path / "fifo.jpeg"]):
        for name, what in (
            ("fifo.jpeg", "a FIFO"),
            ("loop.jpeg", "a symlink loop"),
            ("dangling.jpeg", "a dangling symlink"),
            ("dir.jpg", "a folder"),
        ):
            with pytest.raises(NotARegularFile) as e:
                read_regular(tmp_path / name)
            assert e.value.what == what
    (tmp_path / "ok.jpeg").write_bytes(b"abc")
    assert read_regular(tmp_path / "ok.jpeg") == b"abc"


def test_predict_gives_every_special_file_a_row_and_opens_none(tiny_checkpoint: Path, photo: bytes, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "1_left.jpeg").write_bytes(photo)
    os.mkfifo(folder / "fifo.jpeg")
    (folder / "loop.jpeg").symlink_to(folder / "loop.jpeg")
    (folder / "dangling.jpeg").symlink_to(folder / "nowhere.jpeg")
    (folder / "x.jpg").mkdir()
    alone = tmp_path / "alone.jpeg"  # a FIFO named as a photo, given by name: hung the run for ever
    os.mkfifo(alone)
    with writers_for([folder / "fifo.jpeg", alone]):
        code, output = run([str(folder), str(alone)], tiny_checkpoint, tmp_path / "p.csv")
    assert code == 0, output
    rows = {r["image"]: r for r in csv.DictReader((tmp_path / "p.csv").open())}
    assert {k: r["error"] for k, r in rows.items() if k != "1_left"} == {
        "fifo": "not-a-file: a FIFO",
        "loop": "not-a-file: a symlink loop",
        "dangling": "not-a-file: a dangling symlink",
        "x": "not-a-file: a folder",
        "alone": "not-a-file: a FIFO",
    }
    assert rows["1_left"]["level"] != "" and not rows["1_left"]["error"]
    assert "graded 1 image(s), 5 failed" in output


def test_one_id_for_several_photos_is_refused_in_one_line(tiny_checkpoint: Path, photo: bytes, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.jpeg", "a.png", "sub/a.jpeg", "b.jpeg"):
        (folder / name).write_bytes(photo)
    sample = tmp_path / "sampleSubmission.csv"
    sample.write_text("image,level\na,0\nb,0\n")
    for extra in ([], ["--submission", str(sample)]):
        code, output = run([str(folder), *extra], tiny_checkpoint, tmp_path / "p.csv")
        assert code == 1, output
        assert output.count("\n") == 1 and output.startswith("Error: 1 image id(s) name more than one input: 'a' from ")
        assert all(str(folder / n) in output for n in ("a.jpeg", "a.png", "sub/a.jpeg")) and "b.jpeg" not in output
        assert not (tmp_path / "p.csv").exists()
    # The same file named twice (as itself and inside its folder) is one input, not a duplicate.
    (folder / "a.png").unlink()
    (folder / "sub" / "a.jpeg").unlink()
    code, output = run([str(folder), str(folder / "a.jpeg")], tiny_checkpoint, tmp_path / "p.csv")
    assert code == 0 and "graded 2 image(s), 0 failed" in output, output
