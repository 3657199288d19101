"""Hostile shard sets, inputs and runs (issue 16): real files, real tars, real processes."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from sightx.contracts import manifest as mf
from sightx.contracts import sample as smp
from sightx.contracts.checkpoint import Checkpoint, save
from sightx.contracts.rejects import FILE as REJECTS
from sightx.errors import Rejection
from sightx.image import codec

Edit = Callable[[str, str, bytes], bytes | None]  # (key, extension, data) -> new data, or None to drop the member


def claims_size(width: int, height: int) -> bytes:
    """A ~200-byte JPEG whose header says width x height: what a decoder would allocate for."""
    data = bytearray(simplejpeg.encode_jpeg(np.zeros((8, 8, 3), np.uint8), quality=50))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def rewrite_shard(src: Path, dest: Path, edit: Edit) -> None:
    """Copy a shard member by member through `edit`."""
    with tarfile.open(src) as tin, tarfile.open(dest, "w") as tout:
        for member in tin:
            key, _, ext = member.name.partition(".")
            data = edit(key, ext, tin.extractfile(member).read())  # type: ignore[union-attr]
            if data is not None:
                info = tarfile.TarInfo(member.name)
                info.size = len(data)
                tout.addfile(info, io.BytesIO(data))


def first_key(shard: Path) -> str:
    return next(smp.read_samples(shard))[0]


def edit_one(key: str, ext: str, data: bytes) -> Edit:
    """An edit replacing one member of one sample."""
    return lambda k, e, d: data if (k, e) == (key, ext) else d


@pytest.fixture()
def shard_copy(tiny_shards: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "shards"
    shutil.copytree(tiny_shards, dest)
    return dest


def test_decode_sample_refuses_a_huge_header_undecoded() -> None:
    start = time.perf_counter()
    with pytest.raises(codec.CodecError) as e:
        smp.decode_sample(claims_size(50000, 50000))
    assert e.value.reason == "too-large" and time.perf_counter() - start < 0.5
    with pytest.raises(codec.CodecError, match="too-large"):
        smp.decode_sample(claims_size(64, 64), max_pixels=32 * 32)


def test_the_pixel_limit_of_a_set_is_its_output_square(tiny_shards: Path) -> None:
    m = mf.read(tiny_shards)
    assert mf.sample_pixel_limit(m, smp.MAX_SAMPLE_PIXELS) == 64 * 64
    assert mf.sample_pixel_limit({"options": {"preprocess": {"size": 10**9}}}, 100) == 100
    assert mf.sample_pixel_limit({"options": "oops"}, 100) == 100


def test_predict_and_explore_refuse_a_huge_sample_and_keep_the_rest(shard_copy: Path, tmp_path: Path) -> None:
    from sightx.explore.shards import Skips, labelled_samples, shard_samples
    from sightx.inference.predict import predict
    from sightx.models.factory import build_model

    shard = shard_copy / "train-000000.tar"
    key = first_key(shard)
    rewrite_shard(shard, tmp_path / "t.tar", edit_one(key, "jpg", claims_size(50000, 50000)))
    shutil.move(tmp_path / "t.tar", shard)

    ckpt_path = tmp_path / "c.pt"
    pre = mf.read(shard_copy)["options"]["preprocess"]
    save(ckpt_path, Checkpoint("resnet18", "classify", 32, pre, [0.5, 1.5, 2.5, 3.5], build_model("resnet18", "classify").state_dict()))
    rows = predict([shard], ckpt_path, device="cpu", progress=False)
    bad = [r for r in rows if r["error"]]
    assert len(rows) == mf.read(shard_copy)["shards"][0]["count"] and len(bad) == 1 and "too-large" in bad[0]["error"]

    skips = Skips()
    assert len(list(labelled_samples(shard, skips))) == len(rows) - 1 and skips.by_reason == {"too-large": 1}
    records = [s for s in mf.read(shard_copy)["shards"] if s["name"] == shard.name]
    shard_samples(shard_copy, records, per_grade=20, seed=0, skips=Skips())  # decodes only what passes the header check


def test_read_samples_refuses_a_member_claiming_gigabytes_without_reading_it(tmp_path: Path) -> None:
    shard = tmp_path / "train-000000.tar"
    info = tarfile.TarInfo("a.jpg")
    info.size = 8 << 30
    shard.write_bytes(info.tobuf(tarfile.GNU_FORMAT) + b"\0" * 1024)  # the header alone: 8 GB claimed, none there
    with pytest.raises(smp.OversizedMember) as e:
        list(smp.read_samples(shard))
    assert isinstance(e.value, tarfile.TarError) and isinstance(e.value, Rejection) and "claims" in str(e.value)


# --- item 13: sightx-verify ---------------------------------------------------------------------


def reseal(folder: Path, shard: Path) -> None:
    """Make the manifest's size and sha256 match an edited shard, so only the content checks can tell."""
    from sightx.shard.task import file_sha256

    m = json.loads((folder / mf.MANIFEST).read_text())
    rec = next(s for s in m["shards"] if s["name"] == shard.name)
    rec["bytes"], rec["sha256"] = shard.stat().st_size, file_sha256(shard)
    (folder / mf.MANIFEST).write_text(json.dumps(m))


def run_verify(folder: Path, *args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from sightx.cli import verify

    res = CliRunner().invoke(verify, [str(folder), "--quiet", *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output  # no traceback
    return res.exit_code, res.output


def test_verify_passes_an_intact_set_fast_and_deep(tiny_shards: Path) -> None:
    m = mf.read(tiny_shards)
    for args in ((), ("--deep",)):
        code, out = run_verify(tiny_shards, *args)
        assert code == 0 and out.strip().endswith("OK"), out
        assert f"{m['summary']['written']} sample(s)" in out


def _tamper(folder: Path, how: str) -> str:
    """Damage the set one way; returns what the report must say."""
    shard = folder / "train-000000.tar"
    key = first_key(shard)
    if how == "missing":
        shard.unlink()
        return "train-000000.tar: missing"
    if how == "truncated":
        shard.write_bytes(shard.read_bytes()[:1500])
        return "bytes, the manifest says"
    if how == "flipped":
        data = bytearray(shard.read_bytes())
        data[700] ^= 0x40
        shard.write_bytes(bytes(data))
        return "sha256 differs"
    edits: dict[str, Edit] = {
        "dropped-cls": lambda k, e, d: None if (k, e) == (key, "cls") else d,
        "relabelled": edit_one(key, "cls", b"4" if next(smp.read_samples(shard))[1]["cls"] != b"4" else b"0"),
        "bad-cls": edit_one(key, "cls", b"abc"),
    }
    tmp = folder / "t.tar"
    if how == "duplicate-key":
        with tarfile.open(shard) as tin, tarfile.open(tmp, "w") as tout:
            members = [(m, tin.extractfile(m).read()) for m in tin]  # type: ignore[union-attr]
            for m, d in members + [x for x in members if x[0].name.startswith(key + ".")]:
                tout.addfile(m, io.BytesIO(d))
    else:
        rewrite_shard(shard, tmp, edits[how])
    tmp.replace(shard)
    reseal(folder, shard)
    return {
        "dropped-cls": "members",
        "relabelled": "grades [",
        "bad-cls": "not a grade",
        "duplicate-key": "appear more than once",
    }[how]


@pytest.mark.parametrize("how", ["missing", "truncated", "flipped", "dropped-cls", "relabelled", "bad-cls", "duplicate-key"])
def test_verify_finds_each_kind_of_damage_and_exits_1(shard_copy: Path, how: str) -> None:
    expected = _tamper(shard_copy, how)
    code, out = run_verify(shard_copy)
    assert code == 1 and expected in out and "problem(s)" in out.splitlines()[0], out


def test_verify_deep_checks_images_and_json(shard_copy: Path) -> None:
    shard = shard_copy / "train-000000.tar"
    keys = [k for k, _ in smp.read_samples(shard)]
    bad_json = json.dumps({"key": "someone-else"}).encode()
    edits = {
        (keys[0], "jpg"): b"not a jpeg",
        (keys[1], "json"): b"{oops",
        (keys[2], "json"): bad_json,
        (keys[3], "jpg"): claims_size(9000, 9000),
    }
    rewrite_shard(shard, shard_copy / "t.tar", lambda k, e, d: edits.get((k, e), d))
    (shard_copy / "t.tar").replace(shard)
    reseal(shard_copy, shard)
    assert run_verify(shard_copy)[0] == 0  # the fast checks cannot see inside a well-formed member
    code, out = run_verify(shard_copy, "--deep")
    assert code == 1, out
    for expected in ("not-jpeg", "not valid JSON", ".json lacks", "key is 'someone-else'", "too-large"):
        assert expected in out, (expected, out)


def test_verify_reports_strays_and_a_missing_manifest_in_one_line(shard_copy: Path, tmp_path: Path) -> None:
    shutil.copy(shard_copy / "train-000000.tar", shard_copy / "train-000099.tar")
    code, out = run_verify(shard_copy)
    assert code == 1 and "train-000099.tar: not in the manifest" in out
    code, out = run_verify(tmp_path / "nowhere")
    assert code == 1 and len(out.strip().splitlines()) == 1 and "does not exist" in out


def test_the_trainer_refuses_a_truncated_shard_in_one_line(shard_copy: Path, tmp_path: Path) -> None:
    from sightx.train import TrainConfig, TrainError, train

    _tamper(shard_copy, "truncated")
    with pytest.raises(TrainError, match=r"train-000000.tar: \d+ bytes, the manifest says \d+.*sightx-verify"):
        train(TrainConfig(shards=str(shard_copy), out=str(tmp_path / "run"), arch="resnet18", image_size=32, workers=0, progress=False))


# --- item 5: corrupt samples in training are skipped and counted --------------------------------

CORRUPTIONS = [  # (member, bytes): one corrupt sample each
    ("jpg", b"GIF89a not a jpeg"),
    ("cls", b"abc"),
    ("cls", b"9"),
    ("json", b'{"grade": 1,'),
    ("jpg", claims_size(50000, 50000)),
]


def corrupt_train_samples(folder: Path) -> set[str]:
    """The first sample of each of the first train shards made corrupt, one way each, the manifest
    resealed (so only reading the samples can tell); returns their keys."""
    bad = set()
    for rec, (ext, data) in zip(mf.shards_of(mf.read(folder), "train"), CORRUPTIONS):
        shard = folder / rec["name"]
        key = first_key(shard)
        rewrite_shard(shard, folder / "t.tar", edit_one(key, ext, data))
        (folder / "t.tar").replace(shard)
        reseal(folder, shard)
        bad.add(key)
    return bad


def test_the_stream_skips_and_counts_corrupt_samples_across_spawned_workers(shard_copy: Path) -> None:
    from sightx.train.stream import StreamConfig, make_loader, shard_paths, take_bad_samples

    m = mf.read(shard_copy)
    paths = shard_paths(shard_copy, m, "train")
    before = {p: [k for k, _ in smp.read_samples(Path(p))] for p in paths}
    bad = corrupt_train_samples(shard_copy)
    truncated = Path(paths[len(CORRUPTIONS)])
    truncated.write_bytes(truncated.read_bytes()[:2600])  # cut inside a member: the rest of the shard is unreadable
    readable: list[str] = []
    with pytest.raises(tarfile.TarError):
        readable += [k for k, _ in smp.read_samples(truncated)]
    lost = set(before[str(truncated)]) - set(readable)
    good = {k for keys in before.values() for k in keys} - bad - lost
    assert lost and readable == []  # the cut is in the first sample's image
    cfg = StreamConfig(tuple(paths), image_size=32, train=True, seed=1, shuffle_buffer=8, counts=tuple(m["splits"]["train"]["grades"]))
    loader, epoch = make_loader(cfg, batch_size=4, workers=2)
    for e in range(2):
        epoch.value = e
        keys = [k for *_, ks in loader for k in ks]
        assert sorted(keys) == sorted(good)  # every good sample exactly once
        assert take_bad_samples(loader) == len(bad) + 1  # + the truncated shard's unreadable rest


def test_training_counts_corrupt_samples_per_epoch_and_stops_past_the_limit(shard_copy: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sightx.cli import train

    bad = corrupt_train_samples(shard_copy)
    fast = ["--arch", "resnet18", "--image-size", "32", "--batch-size", "8", "--workers", "0", "--epochs", "1", "--quiet"]
    res = CliRunner().invoke(train, [str(shard_copy), "--out", str(tmp_path / "ok"), *fast])
    assert res.exit_code == 0, res.output
    (row,) = [json.loads(line) for line in (tmp_path / "ok" / "metrics.jsonl").read_text().splitlines()]
    assert row["bad_samples"] == len(bad) and row["val_bad_samples"] == 0  # once each, though progressive balancing resamples

    res = CliRunner().invoke(train, [str(shard_copy), "--out", str(tmp_path / "stop"), *fast, "--max-bad-samples", str(len(bad) - 1)])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    (line,) = res.output.strip().splitlines()
    assert f"{len(bad)} corrupt train samples skipped in epoch 1, more than --max-bad-samples {len(bad) - 1}" in line


# --- item 7: one sightx-shard per output folder ---------------------------------------------------

HOLDER = """import sys, time
from pathlib import Path
from sightx.shard.lock import hold
with hold(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_shard_run_is_refused_while_one_holds_the_folder_and_a_dead_holder_is_taken_over(tiny_raw: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from click.testing import CliRunner

    from sightx.cli import shard
    from sightx.shard.lock import LOCK

    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        args = [str(tiny_raw / "train"), str(out), "--size", "64", "--shard-size", "20", "--workers", "1", "--quiet"]
        res = CliRunner().invoke(shard, args)
        assert res.exit_code == 1
        assert res.output.strip() == f"Error: another sightx-shard (pid {holder.pid}) is writing to {out}; wait for it or stop it"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / LOCK).read_text().strip() == str(holder.pid)  # a stale lock: its process is dead
    res = CliRunner().invoke(shard, args)
    assert res.exit_code == 0, res.output
    assert not (out / LOCK).exists() and mf.read(out)["complete"]


# --- item 10: inputs that are not regular files -----------------------------------------------------


def test_inputs_that_are_not_files_are_counted_and_rejected_not_a_file(tiny_raw: Path, tmp_path: Path) -> None:
    import csv
    import os

    from sightx.image.preprocess import PreprocessOptions
    from sightx.shard import ShardOptions, run

    raw = tmp_path / "raw"
    raw.mkdir()
    real = sorted((tiny_raw / "train").glob("*.jpeg"))[:4]
    for p in real:
        shutil.copy(p, raw / p.name)
    (raw / "labels.csv").write_text("image,level\n" + "".join(f"{p.stem},0\n" for p in real))
    (raw / "dangling.jpeg").symlink_to(raw / "nowhere.jpeg")
    (raw / "loop.jpeg").symlink_to(raw / "loop.jpeg")
    os.mkfifo(raw / "fifo.jpeg")  # reading it would block forever
    (raw / "folder.jpeg").mkdir()
    (raw / "linked.jpeg").symlink_to(raw / real[0].name)  # a symlink to a photo is a photo (without a label here)
    opts = ShardOptions(PreprocessOptions(size=64), shard_size=10, val_fraction=0, labels=str(raw / "labels.csv"), progress=False)
    m = run(raw, tmp_path / "out", opts)
    s = m["summary"]
    assert s["inputs"] == 9 and s["written"] == 4 and s["rejected_by_reason"] == {"not-a-file": 4, "no-label": 1}
    rows = {r["source"]: r for r in csv.DictReader((tmp_path / "out" / REJECTS).open())}
    assert {k: rows[k]["detail"] for k in rows if rows[k]["reason"] == "not-a-file"} == {
        "dangling.jpeg": "a dangling symlink",
        "loop.jpeg": "a symlink loop",
        "fifo.jpeg": "a FIFO",
        "folder.jpeg": "a folder",
    }


# --- item 12: label ids with an extension; a run that writes nothing fails ---------------------------


def test_label_ids_with_an_extension_are_accepted(tiny_raw: Path, tmp_path: Path) -> None:
    from sightx.labels.files import LabelError
    from sightx.labels.formats import read_labels

    path = tmp_path / "labels.csv"
    path.write_text("image,level\n10_left.jpeg,1\n10_right.JPG,2\n11_left,0\n")
    assert read_labels(path) == {"10_left": 1, "10_right": 2, "11_left": 0}
    path.write_text("image,level\n10_left.jpeg,1\n10_left,1\n")
    with pytest.raises(LabelError, match="duplicate image id"):
        read_labels(path)


def test_a_shard_run_that_writes_nothing_exits_1_with_a_hint(tiny_raw: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sightx.cli import shard

    raw = tmp_path / "raw"
    raw.mkdir()
    real = sorted((tiny_raw / "train").glob("*.jpeg"))[:3]
    for p in real:
        shutil.copy(p, raw / p.name)
    labels = raw / "labels.csv"
    labels.write_text("image,level\n" + "".join(f"{p.name},1\n" for p in real))  # ids with .jpeg: accepted
    args = [str(raw), str(tmp_path / "out"), "--labels", str(labels), "--size", "64", "--val-fraction", "0", "--workers", "1", "--quiet"]
    res = CliRunner().invoke(shard, args)
    assert res.exit_code == 0 and "3 written" in res.output, res.output
    labels.write_text("image,level\n" + "".join(f"img_{p.stem}.png,1\n" for p in real))  # ids that match nothing
    res = CliRunner().invoke(shard, [*args, "--overwrite"])
    assert res.exit_code == 1
    error = res.output.strip().splitlines()[-1]
    assert error.startswith("Error: nothing written: 3 of 3 input(s) rejected, mostly no-label; no image matched a label id")
    assert "'img_" in error and "rejects.csv" in error


# --- item 6: worker processes capped by inputs and cores ---------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts processes through /proc")
def test_a_pool_asked_for_999_workers_on_3_items_starts_at_most_3(tmp_path: Path) -> None:
    import multiprocessing as mp

    from pool_probe import siblings

    from sightx.parallel.pool import cap_workers, default_workers, ordered_map

    assert cap_workers(999, 3) == min(3, default_workers()) and cap_workers(999, 0) == 1 and cap_workers(2, 10**6) <= 2
    before = len(mp.active_children())
    counts = list(ordered_map(siblings, [1, 2, 3], 999))
    assert len(counts) == 3 and max(counts) <= min(3, default_workers()) + 1 + before  # + spawn's resource tracker


# --- item 4: file names that are not UTF-8 -----------------------------------------------------------

BAD = b"bad\xff_left.jpeg"  # the bytes on disk; recorded as the text bad\xff_left.jpeg
ODD = b"odd\xfe\xfd.jpeg"


def test_a_name_that_is_not_utf8_is_recorded_as_backslash_x_and_maps_back() -> None:
    import os

    from sightx.files.names import original, recorded

    for raw in (BAD, ODD, "é\\x.jpeg".encode(), b"plain.jpeg"):
        name = recorded(os.fsdecode(raw))
        name.encode("utf-8")  # always writable as UTF-8
        assert os.fsencode(original(name)) == raw
    assert recorded(os.fsdecode(BAD)) == r"bad\xff_left.jpeg" and recorded("10_left.jpeg") == "10_left.jpeg"
    assert recorded("\ud800.jpeg") == r"\ud800.jpeg"  # a surrogate no file system makes (from JSON): escaped too


def _bad_name_folder(tiny_raw: Path, root: Path) -> Path:
    """Three photos, one named with a byte that is not UTF-8 and one more with two such bytes."""
    import os

    root.mkdir()
    photos = sorted((tiny_raw / "train").glob("*.jpeg"))[:3]
    shutil.copy(photos[0], root / photos[0].name)
    shutil.copy(photos[1], os.path.join(os.fsencode(root), BAD))
    shutil.copy(photos[2], os.path.join(os.fsencode(root), ODD))
    return root


def test_shard_processes_photos_whose_names_are_not_utf8_from_a_folder_and_a_tar(tiny_raw: Path, tmp_path: Path) -> None:
    import csv
    import os

    from click.testing import CliRunner

    from sightx.cli import shard

    folder = _bad_name_folder(tiny_raw, tmp_path / "raw")
    packed = tmp_path / "raw.tar"
    with tarfile.open(packed, "w") as tar:  # member names as raw bytes, as GNU tar writes them
        for raw in sorted(os.listdir(os.fsencode(folder))):
            tar.add(os.path.join(os.fsencode(folder), raw), arcname=os.fsdecode(b"photos/" + raw))
    assert BAD in packed.read_bytes()
    first = sorted(p.stem for p in folder.iterdir() if p.name.isascii())[0]
    labels = tmp_path / "labels.csv"
    labels.write_text(f"image,level\n{first},0\nbad\\xff_left,2\n")  # labelled by its recorded name
    for source, prefix in ((folder, ""), (packed, "photos/")):
        out = tmp_path / f"out-{source.name}"
        args = [str(source), str(out), "--labels", str(labels), "--size", "64", "--val-fraction", "0", "--workers", "2", "--quiet"]
        res = CliRunner().invoke(shard, args)
        assert res.exit_code == 0 and "2 written, 1 rejected" in res.output, res.output
        rejects = list(csv.DictReader((out / REJECTS).open(encoding="utf-8")))
        assert [(r["source"], r["image"], r["reason"]) for r in rejects] == [(prefix + r"odd\xfe\xfd.jpeg", r"odd\xfe\xfd", "no-label")]
        metas = {m["image"]: m for _, parts in smp.read_samples(out / "train-000000.tar") for m in [smp.meta_of(parts)]}
        assert metas[r"bad\xff_left"]["source"] == prefix + r"bad\xff_left.jpeg" and metas[r"bad\xff_left"]["grade"] == 2
        assert metas[r"bad\xff_left"]["patient"] == r"bad\xff" and metas[r"bad\xff_left"]["eye"] == "left"
        assert mf.read(out)["summary"]["written"] == 2


def test_predict_grades_photos_whose_names_are_not_utf8(tiny_raw: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    import csv

    from click.testing import CliRunner

    from sightx.cli import predict

    folder = _bad_name_folder(tiny_raw, tmp_path / "raw")
    out = tmp_path / "p.csv"
    res = CliRunner().invoke(predict, [str(folder), "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--workers", "1", "--quiet"])
    assert res.exit_code == 0 and "graded 3 image(s), 0 failed" in res.output, res.output
    rows = {r["image"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert {r"bad\xff_left", r"odd\xfe\xfd"} < set(rows) and all(r["level"] != "" for r in rows.values())


def test_explore_reports_photos_whose_names_are_not_utf8_escaped_in_json_and_html(tiny_raw: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sightx.cli import explore

    folder = _bad_name_folder(tiny_raw, tmp_path / "raw")
    (folder / "trainLabels.csv").write_text(f"image,level\n{sorted(folder.glob('*.jpeg'))[0].stem},0\n")
    out = tmp_path / "report"
    res = CliRunner().invoke(explore, [str(folder), "--out", str(out), "--workers", "1", "--quiet"])
    assert res.exit_code == 0 and "3 images" in res.output, res.output
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    html = (out / "report.html").read_text(encoding="utf-8")
    for names in (summary["labels"]["images_without_label"]["examples"], html):
        assert r"bad\xff_left.jpeg" in names and r"odd\xfe\xfd.jpeg" in names and r"\udc" not in str(names)


def test_zip_names_without_the_utf8_flag_are_code_page_437_and_a_false_flag_is_one_line(tiny_raw: Path, tmp_path: Path) -> None:
    """Python's zipfile cannot write either, so the name bytes of a real zip are patched in place."""
    import zipfile

    from sightx.sources import open_source
    from sightx.sources.base import SourceError

    photo = sorted((tiny_raw / "train").glob("*.jpeg"))[0].read_bytes()
    for written, patched, flagged in ((b"badX_left.jpeg", BAD, False), ("badé_left.jpeg".encode(), b"bad\xff\xfe_left.jpeg", True)):
        path = tmp_path / f"flag{flagged}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(written.decode(), photo)
        path.write_bytes(path.read_bytes().replace(written, patched))  # local header and central directory
        if not flagged:
            assert [m.name for m in open_source(path).members()] == [BAD.decode("cp437")]
            continue
        with pytest.raises(SourceError) as e:
            open_source(path)
        assert "marked UTF-8 but is not (byte 0xff" in str(e.value) and "\n" not in str(e.value)


# --- item 5 (the rest): a full disk, a re-run over a malformed manifest, an edited checkpoint ----------


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB filesystem (tmpfs), so a full disk is a real ENOSPC: needs root, as CI runs."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True).returncode == 0
    except FileNotFoundError:
        mounted = False
    if not mounted:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill the filesystem but `leave` bytes (whole pages): the filler file, to delete for room."""
    import os

    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == 28  # ENOSPC
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_shard_onto_a_full_disk_is_one_line_and_resumes_once_there_is_room(tiny_raw: Path, tiny_disk: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sightx.cli import shard

    raw = tmp_path / "raw"
    raw.mkdir()
    for p in sorted((tiny_raw / "train").glob("*.jpeg"))[:3]:
        shutil.copy(p, raw / p.name)
    out = tiny_disk / "out"
    out.mkdir()
    args = [str(raw), str(out), "--unlabeled", "--size", "64", "--workers", "1", "--quiet"]
    # Full: the lock's pid is the first write. One page left: the lock fits, the first manifest write does not.
    for leave in (0, 4096):
        filler = fill(tiny_disk, leave)
        res = CliRunner().invoke(shard, args)
        assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
        assert res.output.startswith(f"Error: cannot write shards in {out}: No space left on device; once fixed, re-run")
        assert not [p for p in out.iterdir() if p.name != mf.MANIFEST], list(out.iterdir())  # no temp file left behind
        filler.unlink()
    res = CliRunner().invoke(shard, args)
    assert res.exit_code == 0 and "3 written" in res.output, res.output


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(shards="oops"), "manifest field 'shards' is not a list"),
        (lambda m: m["shards"][0].pop("digest"), "manifest field shards[0].digest is missing"),
        (lambda m: m.update(options="oops"), "manifest field options is 'oops', not an object"),
        (lambda m: m["options"].pop("preprocess"), "manifest field options.preprocess is None, not an object"),
        (lambda m: m["options"]["preprocess"].update(size=10**7), "options.preprocess is not valid preprocessing options (size must be"),
        (lambda m: m["options"]["preprocess"].update(max_pixels="all"), "(max_pixels must be an integer"),
    ],
    ids=["shards", "digest", "options", "no-preprocess", "huge-size", "max-pixels"],
)
def test_a_rerun_over_a_manifest_of_the_wrong_structure_is_one_line(
    tiny_raw: Path, shard_copy: Path, edit: Callable[[dict], object], message: str
) -> None:
    from click.testing import CliRunner

    from sightx.cli import shard

    m = json.loads((shard_copy / mf.MANIFEST).read_text())
    edit(m)
    (shard_copy / mf.MANIFEST).write_text(json.dumps(m))
    args = ["--size", "64", "--quality", "90", "--shard-size", "4", "--val-fraction", "0.25", "--seed", "2", "--workers", "1", "--quiet"]
    res = CliRunner().invoke(shard, [str(tiny_raw / "train"), str(shard_copy), *args])  # the command that made it
    assert res.exit_code == 1 and res.output.count("\n") == 1 and res.exception is not None, res.output
    assert message in res.output and res.output.rstrip().endswith("pass --overwrite to replace it"), res.output


def _edited_checkpoint(src: Path, dest: Path, edit: Callable[[dict], object]) -> Path:
    import torch

    state = torch.load(src, weights_only=True)
    edit(state)
    torch.save(state, dest)
    return dest


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.update(arch="resnet34"), "its weights do not fit a resnet34 with a classify head"),
        (lambda s: s.update(arch="resnet1000"), "its arch 'resnet1000' is neither a torchvision model SightX knows nor a timm model"),
        (lambda s: s.update(head="regress"), "its weights do not fit a resnet18 with a regress head"),
        (lambda s: s["preprocess"].update(size=10**7), "(size must be an integer from 16 to 4,096, got 10000000)"),
        (lambda s: s["preprocess"].update(max_pixels="x"), "(max_pixels must be an integer"),
        (lambda s: s["preprocess"].update(min_side=None), "(min_side must be an integer"),
        (lambda s: s["preprocess"].update(quality=90.5), "(quality must be an integer from 1 to 100, got 90.5)"),
        (lambda s: s["preprocess"].update(min_radius_frac="x"), "(min_radius_frac must be a number in [0, 1)"),
        (lambda s: s["thresholds"].__setitem__(1, float("nan")), "thresholds are not 4 numbers"),
        (lambda s: s.update(normalization={"mean": [0.5] * 3, "std": [1, 1, float("nan")]}), "three positive stds"),
    ],
    ids=["arch", "unknown-arch", "head", "size", "max-pixels", "min-side", "quality", "min-radius", "threshold-nan", "std-nan"],
)
def test_predict_with_an_edited_checkpoint_is_one_line(
    tiny_raw: Path, tiny_checkpoint: Path, tmp_path: Path, edit: Callable[[dict], object], message: str
) -> None:
    from click.testing import CliRunner

    from sightx.cli import predict

    bad = _edited_checkpoint(tiny_checkpoint, tmp_path / "edited.pt", edit)
    photo = sorted((tiny_raw / "train").glob("*.jpeg"))[0]
    args = [str(photo), "--checkpoint", str(bad), "--out", str(tmp_path / "p.csv"), "--device", "cpu", "--quiet"]
    res = CliRunner().invoke(predict, args)
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert res.output.startswith(f"Error: {bad}: ") and message in res.output, res.output
    assert not (tmp_path / "p.csv").exists()
