"""sightx-train from a URL: a real HTTP server on loopback, fsspec's local filesystem, a real pipe: command."""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from sightx.cli import train as train_cli
from sightx.contracts import manifest as mf
from sightx.contracts.sample import read_samples
from sightx.train import TrainError, locations
from sightx.train.stream import StreamConfig, make_loader, take_bad_samples
from sightx.train.trainer import read_shards

FAST = ["--arch", "resnet18", "--image-size", "32", "--batch-size", "8", "--workers", "0", "--epochs", "1", "--seed", "4", "--quiet"]
TIMINGS = ("images_per_s", "data_wait", "seconds")  # how fast, not what was learned


@contextlib.contextmanager
def serve(folder: Path, cut: str = "") -> Iterator[tuple[str, list[str]]]:
    """Python's http.server on a free loopback port serving `folder`; yields its URL and the request log.

    `cut`: a file whose GET announces its full length but sends only half, then drops the connection.
    """
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            requests.append(f"{self.command} {self.path}")

        def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
            if cut and self.path == f"/{cut}":
                data = source.read()
                outputfile.write(data[: _half(len(data))])
                self.close_connection = True
                return
            super().copyfile(source, outputfile)

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _rows(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def _epoch(where: str, workers: int, **kw: str) -> list[tuple[str, bytes]]:
    """One training epoch's samples, in order, as the trainer's stream reads them from `where`."""
    manifest, train_shards, _, location = read_shards(where, **kw)
    cfg = StreamConfig(
        tuple(train_shards),
        image_size=32,
        train=True,
        seed=3,
        shuffle_buffer=8,
        balance="sample",
        counts=tuple(manifest["splits"]["train"]["grades"]),
        location=location,
    )
    loader, _ = make_loader(cfg, batch_size=4, workers=workers)
    return [(key, image.numpy().tobytes()) for images, _, _, keys in loader for image, key in zip(images, keys)]


def test_training_from_a_served_folder_equals_training_from_the_folder(tiny_shards: Path, tmp_path: Path) -> None:
    with serve(tiny_shards) as (url, requests):
        res = CliRunner().invoke(train_cli, [url, "--out", str(tmp_path / "http"), "--balance", "none", *FAST])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(train_cli, [str(tiny_shards), "--out", str(tmp_path / "dir"), "--balance", "none", *FAST])
    assert res.exit_code == 0, res.output
    assert _rows(tmp_path / "http") == _rows(tmp_path / "dir")
    assert _rows(tmp_path / "http")[0]["train_images"] == mf.read(tiny_shards)["splits"]["train"]["count"]  # every sample, once
    names = [s["name"] for s in mf.read(tiny_shards)["shards"]]
    assert "GET /manifest.json" in requests
    assert all(f"HEAD /{n}" in requests and f"GET /{n}" in requests for n in names)  # checked, then read over HTTP


def test_spawned_loader_workers_read_the_same_epoch_over_http(tiny_shards: Path) -> None:
    reference = _epoch(str(tiny_shards), workers=0)
    with serve(tiny_shards) as (url, _):
        assert _epoch(url + "/manifest.json", workers=1) == reference  # the location pickles to a spawned worker
    assert len(reference) >= mf.read(tiny_shards)["splits"]["train"]["count"] // 2


def test_pipe_and_fsspec_locations_read_the_same_epoch(tiny_shards: Path, tmp_path: Path) -> None:
    reference = _epoch(str(tiny_shards), workers=0)
    assert _epoch(f"pipe:cat {tiny_shards}/{{name}}", workers=0) == reference
    pytest.importorskip("fsspec")
    assert _epoch(f"file://{tiny_shards}", workers=0) == reference
    # --manifest: the manifest read from a file of its own, the shards through the command.
    shutil.copy(tiny_shards / mf.MANIFEST, tmp_path / "m.json")
    assert _epoch(f"pipe:cat {tiny_shards}/{{name}}", workers=0, manifest=str(tmp_path / "m.json")) == reference


def _one_line(args: list[str]) -> str:
    res = CliRunner().invoke(train_cli, [*args, *FAST])
    assert res.exit_code == 1, res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith("Error: ")
    return line


def test_an_unreachable_or_wrong_url_is_one_line(tiny_shards: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    out = ["--out", str(tmp_path / "run")]
    assert f"cannot reach http://127.0.0.1:{port}/manifest.json: ConnectionRefusedError" in _one_line([f"http://127.0.0.1:{port}/", *out])
    with serve(tmp_path) as (url, _):
        assert "manifest.json: HTTP 404 File not found: is this the URL of a folder written by sightx-shard?" in _one_line([url, *out])
    assert "a pipe: location needs {name}" in _one_line(["pipe:cat shards.tar", *out])
    line = _one_line(["pipe:echo no such bucket >&2; exit 3 # {name}", *out])
    assert "exited with status 3: no such bucket" in line
    assert not (tmp_path / "run").exists()


def test_a_served_set_with_a_missing_or_short_shard_is_refused_before_training(tiny_shards: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_shards, copy)
    first, second = (s["name"] for s in mf.shards_of(mf.read(copy), "train")[:2])
    (copy / first).unlink()
    (copy / second).write_bytes((copy / second).read_bytes()[:1024])
    with serve(copy) as (url, requests):
        with pytest.raises(TrainError) as e:
            read_shards(url)
    assert str(e.value).startswith(f"{url}: {first}: HTTP 404 File not found (and 1 more); sightx-verify checks a downloaded copy")
    assert not [r for r in requests if r.startswith("GET /") and r.endswith(".tar")]  # refused on HEAD requests alone


def _half(size: int) -> int:
    """Half a shard, cut at a 512-byte tar block boundary: what a tar reader alone takes for the archive's end."""
    return size // 2 // 512 * 512


@pytest.mark.parametrize("via", ["http", "pipe"])
def test_a_shard_cut_short_in_transit_is_counted_and_the_rest_of_the_epoch_is_read(tiny_shards: Path, via: str) -> None:
    manifest = mf.read(tiny_shards)
    records = mf.shards_of(manifest, "train")
    victim = records[1]["name"]
    half = _half((tiny_shards / victim).stat().st_size)
    cut = f"head -c {half} {tiny_shards}/{victim}"
    command = f"pipe:if [ {{name}} = {victim} ]; then {cut}; else cat {tiny_shards}/{{name}}; fi"  # exits 0 all the same
    with serve(tiny_shards, cut=victim) if via == "http" else contextlib.nullcontext((command, [])) as (where, _):
        _, train_shards, _, location = read_shards(where)
        sizes = tuple(r["bytes"] for r in records)  # as the trainer passes them
        cfg = StreamConfig(tuple(train_shards), image_size=32, train=False, location=location, sizes=sizes)
        loader, _ = make_loader(cfg, batch_size=4, workers=0)
        keys = [k for *_, batch in loader for k in batch]
        bad = take_bad_samples(loader)
    everything = {k for rec in records for k, _ in read_samples(tiny_shards / rec["name"])}
    lost = {k for k, _ in read_samples(tiny_shards / victim)}
    assert bad == 1  # the shard's missing rest, counted once (the trainer stops past --max-bad-samples)
    assert everything - lost <= set(keys) < everything and len(keys) == len(set(keys))


def test_names_from_a_served_manifest_are_never_urls_or_commands(tiny_shards: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_shards, copy)
    m = json.loads((copy / mf.MANIFEST).read_text())
    m["shards"][0]["name"] = "pipe:touch PWNED"
    (copy / mf.MANIFEST).write_text(json.dumps(m))
    with serve(copy) as (url, _):
        with pytest.raises(mf.ManifestError, match=r"shards\[0\]\.name is 'pipe:touch PWNED'"):
            read_shards(url)
    assert not list(tmp_path.rglob("PWNED"))


def test_location_forms() -> None:
    assert locations.parse("shards").kind == "folder"
    assert locations.parse("https://host/sets/a/manifest.json").base == "https://host/sets/a"
    assert locations.parse("pipe:gsutil cat gs://b/{name}").kind == "pipe"
    pytest.importorskip("fsspec")
    assert locations.parse("simplecache::s3://b/shards/").base == "simplecache::s3://b/shards"
    assert locations.parse("simplecache::s3://b/shards/").kind == "fsspec"
