"""Sources end to end: real zips (Zip64), byte-split parts, the nested competition zip and tars built
from sightx-synth output; the same shards from every one; each bad-archive case; kill -9 and resume."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from outputs import stable_outputs

from sightx.cli import shard as shard_cli
from sightx.contracts import manifest as mf
from sightx.contracts.rejects import FILE as REJECTS
from sightx.errors import Rejection
from sightx.image.preprocess import PreprocessOptions
from sightx.shard import ShardOptions, run
from sightx.sources import open_source
from sightx.sources.splitfile import SplitFile
from sightx.sources.unpack import unpack
from sightx.sources.zipsource import ZipSource
from sightx.synth.generate import SynthOptions, generate

PRE = PreprocessOptions(size=64, quality=90)
OPTS = dict(preprocess=PRE, shard_size=3, val_fraction=0.25, seed=3, workers=1, progress=False)
CLI_OPTS = ["--size", "64", "--quality", "90", "--shard-size", "3", "--val-fraction", "0.25", "--seed", "3", "--quiet"]


def _opts(**kw: object) -> ShardOptions:
    return ShardOptions(**{**OPTS, **kw})  # type: ignore[arg-type]


@contextlib.contextmanager
def _zip64_everywhere() -> Iterator[None]:
    """zipfile writes Zip64 records past ZIP64_LIMIT: lowered, a small test zip gets them all
    (Zip64 central-directory extras, end record and locator), as the 35 GB train.zip has."""
    limit = zipfile.ZIP64_LIMIT
    zipfile.ZIP64_LIMIT = 1 << 10
    try:
        yield
    finally:
        zipfile.ZIP64_LIMIT = limit


def _write_zip(path: Path, files: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with _zip64_everywhere(), zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, (2015, 1, 1, 0, 0, 0))
            info.compress_type = compression
            with zf.open(info, "w", force_zip64=True) as f:
                f.write(data)
    return path


def _split(data: bytes, folder: Path, stem: str, parts: int) -> list[Path]:
    """A plain byte split, as Kaggle ships train.zip.001 ...: equal parts, the last one shorter."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(data) // parts)
    paths = []
    for i in range(parts):
        paths.append(folder / f"{stem}.{i + 1:03d}")
        paths[-1].write_bytes(data[i * size : (i + 1) * size])
    return paths


def _files(folder: Path, prefix: str) -> dict[str, bytes]:
    return {f"{prefix}/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same synthetic set as a folder and as every kind of archive the download comes in."""
    root = tmp_path_factory.mktemp("archives")
    raw = root / "synth"
    generate(raw, SynthOptions(n=14, seed=5, sizes=((640, 427),), corrupt=2, n_test=3, workers=1, progress=False, balanced=True))
    labels_csv = (raw / "trainLabels.csv").read_bytes()
    shutil.copytree(raw / "train", root / "folder" / "train")
    shutil.copytree(raw / "test", root / "test-folder" / "test")
    (root / "folder" / "trainLabels.csv").write_bytes(labels_csv)
    train = _files(raw / "train", "train")
    test = _files(raw / "test", "test")
    labels_zip = io.BytesIO()
    with zipfile.ZipFile(labels_zip, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("trainLabels.csv", labels_csv)

    (root / "zip").mkdir()
    zipped = _write_zip(root / "zip" / "train.zip", train)
    (root / "zip" / "trainLabels.csv.zip").write_bytes(labels_zip.getvalue())
    parts = _split(zipped.read_bytes(), root / "download" / "parts", "train.zip", 3)
    (root / "download" / "trainLabels.csv.zip").write_bytes(labels_zip.getvalue())
    test_zip = _write_zip(root / "test.zip", test, zipfile.ZIP_DEFLATED)

    competition = root / "kaggle" / "diabetic-retinopathy-detection.zip"
    competition.parent.mkdir()
    with zipfile.ZipFile(competition, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in parts:
            zf.write(p, p.name)
        for p in _split(test_zip.read_bytes(), root / "test-parts", "test.zip", 2):
            zf.write(p, p.name)
        zf.writestr("trainLabels.csv.zip", labels_zip.getvalue())
        zf.writestr("sampleSubmission.csv.zip", labels_zip.getvalue())

    (root / "tar").mkdir()
    for name, mode in (("train.tar", "w"), ("train.tar.gz", "w:gz")):
        with tarfile.open(root / "tar" / name, mode) as tar:  # type: ignore[call-overload]
            tar.add(raw / "train", "train")
    (root / "tar" / "trainLabels.csv").write_bytes(labels_csv)
    return {
        "folder": root / "folder",
        "zip": zipped,
        "first part": parts[0],
        "parts folder": parts[0].parent,
        "competition": competition,
        "tar": root / "tar" / "train.tar",
        "tar.gz": root / "tar" / "train.tar.gz",
        "test folder": root / "test-folder",
    }


@pytest.fixture(scope="module")
def reference(archives: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("reference")
    m = run(archives["folder"], out, _opts())
    assert m["summary"]["written"] >= 12 and m["summary"]["rejected_by_reason"] == {"empty-file": 1, "truncated": 1}
    return stable_outputs(out)


def test_zip_is_zip64(archives: dict[str, Path]) -> None:
    data = archives["zip"].read_bytes()
    assert b"PK\x06\x06" in data[-200:] and b"PK\x06\x07" in data[-200:]  # Zip64 end record and locator


@pytest.mark.parametrize(
    "kind, workers", [("zip", 1), ("first part", 1), ("parts folder", 1), ("competition", 1), ("competition", 2), ("tar", 1), ("tar.gz", 1)]
)
def test_every_source_gives_the_same_bytes(
    archives: dict[str, Path], reference: dict[str, bytes], tmp_path: Path, kind: str, workers: int
) -> None:
    m = run(archives[kind], tmp_path, _opts(workers=workers))
    assert stable_outputs(tmp_path) == reference
    sources = [r["source"] for r in csv_rows(tmp_path)]
    assert all(s.startswith("train/") for s in sources) and m["complete"]


def csv_rows(out: Path) -> list[dict[str, str]]:
    import csv

    with open(out / REJECTS, newline="") as f:
        return list(csv.DictReader(f))


def test_competition_zip_directory_read_back_across_parts(archives: dict[str, Path], tmp_path: Path) -> None:
    """The inner directory is read from the inflated last part alone when it fits there (Kaggle's
    case); a last part holding less than the directory, even less than its end record, takes the
    parts before it too."""
    data = archives["zip"].read_bytes()
    for tail in (40, 300):  # shorter than the end records; longer than them, shorter than the directory
        size = -(-(len(data) - tail) // 2)
        folder = tmp_path / str(tail)
        folder.mkdir()
        chunks = [data[:size], data[size:-tail], data[-tail:]]
        competition = folder / "kaggle.zip"
        with zipfile.ZipFile(competition, "w", zipfile.ZIP_DEFLATED) as zf:
            for i, chunk in enumerate(chunks):
                zf.writestr(f"train.zip.{i + 1:03d}", chunk)
        source = open_source(competition)
        assert [m.name for m in source.members()] == [m.name for m in open_source(archives["zip"]).members()]


def test_competition_zip_unlabeled_takes_the_test_images(archives: dict[str, Path], tmp_path: Path) -> None:
    m = run(archives["competition"], tmp_path / "zip", _opts(unlabeled=True))
    assert set(m["splits"]) == {"test"} and m["splits"]["test"]["count"] == 3 and not m["summary"]["labels_without_image"]
    run(archives["test folder"], tmp_path / "folder", _opts(unlabeled=True))
    assert stable_outputs(tmp_path / "zip") == stable_outputs(tmp_path / "folder")


def test_sources_pickle_as_their_description(archives: dict[str, Path]) -> None:
    for kind in ("folder", "zip", "first part", "competition", "tar", "tar.gz"):
        source = open_source(archives[kind])
        again = pickle.loads(pickle.dumps(source))
        assert len(pickle.dumps(source)) < 1000 and type(again) is type(source)
        assert [m.name for m in again.members()] == [m.name for m in source.members()]
        if source.random_access:
            name = source.members()[0].name
            assert again.read(name) == source.read(name)


def test_split_file_random_access_matches_the_joined_bytes(archives: dict[str, Path]) -> None:
    parts = sorted(archives["parts folder"].iterdir())
    joined = b"".join(p.read_bytes() for p in parts)
    f = SplitFile(parts)
    for offset, n in ((0, 10), (len(parts[0].read_bytes()) - 3, 7), (len(joined) - 5, 50), (123, len(joined))):
        f.seek(offset)
        assert f.read(n) == joined[offset : offset + n]
    f.seek(-4, os.SEEK_END)
    assert f.read() == joined[-4:]
    f.close()


def _one_line_cli_error(source: Path, out: Path, *args: str) -> str:
    res = CliRunner().invoke(shard_cli, [str(source), str(out), "--quiet", "--workers", "1", *args])
    assert res.exit_code == 1 and "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not out.exists()  # refused before any work
    return res.output


def _copy_parts(archives: dict[str, Path], to: Path) -> list[Path]:
    shutil.copytree(archives["parts folder"], to)
    return sorted(to.iterdir())


def test_missing_parts_are_named(archives: dict[str, Path], tmp_path: Path) -> None:
    parts = _copy_parts(archives, tmp_path / "parts")
    parts[1].unlink()
    assert "train.zip.002 is missing" in _one_line_cli_error(parts[0], tmp_path / "out")
    parts[0].unlink()  # every gap named at once: one more download fetches them all
    assert "train.zip.001, train.zip.002 are missing (found 1 part(s))" in _one_line_cli_error(parts[2], tmp_path / "out")
    for part in parts[:2]:
        shutil.copy(archives["parts folder"] / part.name, part)
    parts[2].unlink()  # the Kaggle gotcha: the last part absent
    assert "a part is missing or truncated" in _one_line_cli_error(tmp_path / "parts", tmp_path / "out")


def test_truncated_parts(archives: dict[str, Path], tmp_path: Path) -> None:
    parts = _copy_parts(archives, tmp_path / "parts")
    parts[2].write_bytes(parts[2].read_bytes()[:-100])
    assert "a part is missing or truncated" in _one_line_cli_error(parts[0], tmp_path / "out")
    parts = _copy_parts(archives, tmp_path / "parts2")
    parts[1].write_bytes(parts[1].read_bytes()[:-100])
    assert "train.zip.002 is" in _one_line_cli_error(parts[0], tmp_path / "out", "--labels", str(tmp_path / "x.csv"))


def _patched(src: Path, to: Path, edit: object) -> Path:
    data = bytearray(src.read_bytes())
    edit(data)  # type: ignore[operator]
    to.write_bytes(bytes(data))
    return to


def _cd_entries(data: bytearray) -> list[int]:
    out, i = [], data.find(b"PK\x01\x02")
    while i >= 0:
        out.append(i)
        i = data.find(b"PK\x01\x02", i + 4)
    return out


def test_bad_archives_are_refused_with_one_line(archives: dict[str, Path], tmp_path: Path) -> None:
    labels = ["--labels", str(archives["folder"] / "trainLabels.csv")]
    not_zip = tmp_path / "train.zip"
    not_zip.write_text("<html>404</html>")
    assert "is not a zip archive" in _one_line_cli_error(not_zip, tmp_path / "out", *labels)

    def damage_directory(d: bytearray) -> None:
        d[_cd_entries(d)[3] : _cd_entries(d)[3] + 4] = b"XXXX"

    damaged = _patched(archives["zip"], tmp_path / "damaged.zip", damage_directory)
    assert "damaged central directory" in _one_line_cli_error(damaged, tmp_path / "out", *labels)

    def encrypt(d: bytearray) -> None:
        for i in _cd_entries(d):
            d[i + 8] |= 1

    encrypted = _patched(archives["zip"], tmp_path / "encrypted.zip", encrypt)
    assert "is encrypted" in _one_line_cli_error(encrypted, tmp_path / "out", *labels)

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train/1_left.jpeg", b"\0" * (8 << 20))
    assert "zip bomb" in _one_line_cli_error(bomb, tmp_path / "out", *labels)

    assert "not a folder, zip" in _one_line_cli_error(archives["folder"] / "trainLabels.csv", tmp_path / "out", *labels)
    gz = archives["tar.gz"].read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(gz[: len(gz) // 2])
    assert "truncated tar" in _one_line_cli_error(tmp_path / "cut.tar.gz", tmp_path / "out", *labels)


def test_competition_zip_missing_part(archives: dict[str, Path], tmp_path: Path) -> None:
    partial = tmp_path / "diabetic-retinopathy-detection.zip"
    with zipfile.ZipFile(archives["competition"]) as src, zipfile.ZipFile(partial, "w") as dst:
        for info in src.infolist():
            if info.filename != "train.zip.002":
                dst.writestr(info, src.read(info))
    assert "train.zip.002 is missing" in _one_line_cli_error(partial, tmp_path / "out")


def _member_offsets(zipped: Path) -> list[tuple[str, int]]:
    with zipfile.ZipFile(zipped) as zf:
        return [(i.filename, i.header_offset + 30 + len(i.filename) + len(i.extra) + 200) for i in zf.infolist()]


def test_a_damaged_member_is_a_corrupt_member_reject(archives: dict[str, Path], tmp_path: Path) -> None:
    name, at = _member_offsets(archives["zip"])[2]

    def flip(d: bytearray) -> None:
        d[at] ^= 0xFF

    (tmp_path / "zip").mkdir()
    bad = _patched(archives["zip"], tmp_path / "zip" / "train.zip", flip)
    m = run(bad, tmp_path / "out", _opts(labels=str(archives["folder"] / "trainLabels.csv")))
    rows = {r["source"]: r for r in csv_rows(tmp_path / "out")}
    assert rows[name]["reason"] == "corrupt-member" and "CRC" in rows[name]["detail"]
    assert m["summary"]["inputs"] == m["summary"]["written"] + m["summary"]["rejected"] and m["complete"]

    # The same damage inside the competition zip's inner zip: found by the streaming pass.
    parts = _split(bad.read_bytes(), tmp_path / "parts", "train.zip", 3)
    competition = tmp_path / "kaggle.zip"
    with zipfile.ZipFile(competition, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in parts:
            zf.write(p, p.name)
    m = run(competition, tmp_path / "out2", _opts(labels=str(archives["folder"] / "trainLabels.csv")))
    rows = {r["source"]: r for r in csv_rows(tmp_path / "out2")}
    assert rows[name]["reason"] == "corrupt-member" and m["complete"]


def test_a_deflated_member_that_lies_is_rejected_never_inflated_past_its_size(archives: dict[str, Path]) -> None:
    """libdeflate inflates into exactly the declared size: a member declaring less, or more, than
    its data holds, damaged data and short data are each a corrupt-member, and a good one reads."""
    source = ZipSource(str(archives["competition"].parent.parent / "test.zip"))
    info = next(i for i in source.index.values() if i.compress_type == zipfile.ZIP_DEFLATED and i.file_size > 1000)
    stored = source._stored(info)
    assert unpack(info, stored) == source.zip.read(info)

    def lied(**fields: int) -> zipfile.ZipInfo:
        copy = zipfile.ZipInfo(info.filename)
        copy.compress_type, copy.file_size, copy.compress_size, copy.CRC = info.compress_type, info.file_size, info.compress_size, info.CRC
        for k, v in fields.items():
            setattr(copy, k, v)
        return copy

    damaged = bytearray(stored)
    damaged[len(damaged) // 2] ^= 0xFF
    cases = [
        (lied(file_size=info.file_size - 1), stored),
        (lied(file_size=info.file_size * 4), stored),
        (lied(CRC=info.CRC ^ 1), stored),
        (info, bytes(damaged)),
        (info, stored[:-10]),
    ]
    for member, data in cases:
        with pytest.raises(Rejection) as e:
            unpack(member, data)
        assert e.value.reason == "corrupt-member"


def test_hostile_member_names_are_read_never_written(archives: dict[str, Path], tmp_path: Path) -> None:
    train = _files(archives["folder"] / "train", "train")
    first, second, *rest = train
    hostile = {"../../escape/" + first[6:]: train[first], "/abs/" + second[6:]: train[second], **{n: train[n] for n in rest}}
    hostile["../" + rest[0]] = train[rest[0]]  # the same name as a member once made safe
    (tmp_path / "in").mkdir()
    zipped = _write_zip(tmp_path / "in" / "hostile.zip", hostile)
    before = set(tmp_path.parent.rglob("*"))
    m = run(zipped, tmp_path / "out", _opts(labels=str(archives["folder"] / "trainLabels.csv")))
    assert {p for p in set(tmp_path.parent.rglob("*")) - before if tmp_path / "out" not in (p, *p.parents)} == set()
    names = [m.name for m in open_source(zipped).members()]
    assert "escape/" + first[6:] in names and "abs/" + second[6:] in names and not any(".." in n or n.startswith("/") for n in names)
    assert m["summary"]["inputs"] == m["summary"]["written"] + m["summary"]["rejected"] == len(train) + 1
    assert {r["source"]: r["reason"] for r in csv_rows(tmp_path / "out")}[rest[0] + "~2"] == "duplicate-id"


def _done(out: Path) -> int:
    return len(list(out.glob("*.tar"))) if out.is_dir() else 0


@pytest.mark.parametrize("kind", ["first part", "competition"])
def test_sigkill_and_resume_is_byte_identical_without_extraction(
    archives: dict[str, Path], reference: dict[str, bytes], tmp_path: Path, kind: str
) -> None:
    out, scratch = tmp_path / "out", tmp_path / "tmp"
    scratch.mkdir()
    cmd = [str(Path(sys.executable).parent / "sightx-shard"), str(archives[kind]), str(out), *CLI_OPTS, "--workers", "2"]
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.time() + 120
    while _done(out) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, "finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = {p.name for p in out.iterdir()}
    outputs = (".tar", ".tar.tmp", ".tar.spool", ".json", ".csv")  # shards, in progress or done; the manifest and rejects
    # ... and the output folder's lock, which a killed run leaves for the next one to take over
    assert all(n.endswith(outputs) or n.startswith((".manifest.json.", ".rejects.csv.", ".sightx-shard.lock")) for n in left), left
    assert not mf.read(out)["complete"]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    assert stable_outputs(out) == reference
    assert not list(scratch.iterdir())  # nothing was extracted or copied to the temp directory


def test_synth_kaggle_archive_shards_like_its_folder(tmp_path: Path) -> None:
    from sightx.cli import synth as synth_cli

    common = ["--n", "8", "--seed", "9", "--size", "640x427", "--with-test", "3", "--corrupt", "1", "--workers", "1", "--quiet"]
    for name, extra in (("folder", []), ("kaggle", ["--archive", "kaggle"])):
        res = CliRunner().invoke(synth_cli, [str(tmp_path / name), *common, *extra])
        assert res.exit_code == 0, res.output
    download = tmp_path / "kaggle" / "diabetic-retinopathy-detection.zip"
    assert sorted(p.name for p in (tmp_path / "kaggle").iterdir()) == ["diabetic-retinopathy-detection.zip", "synthTruth.csv"]
    with zipfile.ZipFile(download) as zf:
        names = zf.namelist()
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    assert names[:3] == ["sample.zip", "sampleSubmission.csv.zip", "trainLabels.csv.zip"]
    assert [n for n in names if n.startswith("train.zip.")] == [f"train.zip.{i:03d}" for i in range(1, 6)]
    assert [n for n in names if n.startswith("test.zip.")] == [f"test.zip.{i:03d}" for i in range(1, 8)]
    shutil.rmtree(tmp_path / "folder" / "test")
    run(tmp_path / "folder", tmp_path / "from-folder", _opts())
    run(download, tmp_path / "from-zip", _opts())
    assert stable_outputs(tmp_path / "from-zip") == stable_outputs(tmp_path / "from-folder")
    assert run(download, tmp_path / "test", _opts(unlabeled=True))["splits"]["test"]["count"] == 3


def _as(fmt: str, data: bytes) -> bytes:
    """A synthetic JPEG re-encoded losslessly as PNG or TIFF (broken inputs stay as they are)."""
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    return data if img is None else cv2.imencode(f".{fmt}", img)[1].tobytes()


def _other_datasets(folder: Path, root: Path) -> dict[str, tuple[Path, dict[str, str]]]:
    """The synthetic set written as APTOS, IDRiD, Messidor-2 and DDR distribute theirs."""
    images = sorted((folder / "train").iterdir())
    grades = dict(line.split(",") for line in (folder / "trainLabels.csv").read_text().splitlines()[1:])
    ids = [p.stem for p in images]
    (root / "aptos" / "train_images").mkdir(parents=True)
    (root / "aptos" / "train.csv").write_text("id_code,diagnosis\n" + "".join(f"{i},{grades[i]}\n" for i in ids))
    (root / "idrid" / "images").mkdir(parents=True)
    idrid = "Image name,Retinopathy grade,Risk of macular edema ,,\n" + "".join(f"{i},{grades[i]},0,,\n" for i in ids) + ",,,,\n"
    (root / "idrid" / "a. IDRiD_Training Labels.csv").write_text(idrid)
    (root / "messidor" / "IMAGES").mkdir(parents=True)
    rows = [f"{i}.tif,{grades[i] if k else ''},0,{0 if k == 0 else 1}\n" for k, i in enumerate(ids)]
    (root / "messidor" / "messidor_data.csv").write_text(
        "image_id,adjudicated_dr_grade,adjudicated_dme,adjudicated_gradable\n" + "".join(rows)
    )
    (root / "ddr" / "train").mkdir(parents=True)
    (root / "ddr" / "train.txt").write_text("".join(f"{i}.jpg {5 if k == 1 else grades[i]}\n" for k, i in enumerate(ids)))
    for p in images:
        data = p.read_bytes()
        (root / "aptos" / "train_images" / f"{p.stem}.png").write_bytes(_as("png", data))
        (root / "idrid" / "images" / f"{p.stem}.jpg").write_bytes(data)
        (root / "messidor" / "IMAGES" / f"{p.stem}.tif").write_bytes(_as("tiff", data))
        (root / "ddr" / "train" / f"{p.stem}.jpg").write_bytes(data)
    return {
        "aptos": (root / "aptos" / "train_images", {}),
        "idrid": (root / "idrid" / "images", {}),
        "messidor2": (root / "messidor" / "IMAGES", {ids[0]: "ungradable-label"}),
        "ddr": (root / "ddr" / "train", {ids[1]: "ungradable-label"}),
    }


def test_other_dr_datasets_as_distributed(archives: dict[str, Path], tmp_path: Path) -> None:
    for fmt, (images, expected) in _other_datasets(archives["folder"], tmp_path / "sets").items():
        m = run(images, tmp_path / fmt, _opts())
        assert m["run"]["label_format"] == fmt
        assert m["run"]["full_decodes"] == (14 + 2 if fmt in ("aptos", "messidor2") else 0)
        rows = {Path(r["source"]).stem: r["reason"] for r in csv_rows(tmp_path / fmt)}
        assert {k: v for k, v in rows.items() if v == "ungradable-label"} == expected
        assert m["summary"]["inputs"] == 16 and m["summary"]["written"] == 14 - len(expected), (fmt, rows)


def test_label_formats_are_detected_and_validated(archives: dict[str, Path], tmp_path: Path) -> None:
    from sightx.labels.files import LabelError
    from sightx.labels.formats import read_label_set

    assert read_label_set(b" Image name , Retinopathy grade ,\nIDRiD_001,3,\n", "i.csv").grades == {"IDRiD_001": 3}
    ddr = read_label_set(b"007-0004-000.jpg 2\n007-0005-000.jpg 5\n", "train.txt")
    assert (ddr.format, ddr.grades, ddr.ungradable) == ("ddr", {"007-0004-000": 2}, frozenset({"007-0005-000"}))
    with pytest.raises(LabelError, match="not a known label format"):
        read_label_set(b"foo,bar\n1,2\n", "x.csv")
    with pytest.raises(LabelError, match=r"grade not in 0-4 on line\(s\) 3"):
        read_label_set(b"id_code,diagnosis\na,1\nb,7\n", "train.csv")
    with pytest.raises(LabelError, match=r"expected '<file> <grade>' on line\(s\) 2"):
        read_label_set(b"a.jpg 1\nb.jpg\n", "train.txt", "ddr")
    shutil.copytree(archives["folder"] / "train", tmp_path / "DDR" / "train")
    for split in ("train", "valid"):
        (tmp_path / "DDR" / f"{split}.txt").write_text("10_left.jpg 0\n")
    assert "several label files" in _one_line_cli_error(tmp_path / "DDR" / "train", tmp_path / "out")


@pytest.mark.parametrize("kind, workers", [("zip", 1), ("competition", 2), ("tar.gz", 1)])
def test_explore_reads_archives_as_their_folder(archives: dict[str, Path], tmp_path: Path, kind: str, workers: int) -> None:
    from sightx.explore import ExploreOptions, explore

    opts = ExploreOptions(per_grade=1, seed=0, sample=6, workers=workers, progress=False)
    folder = explore(archives["folder"], tmp_path / "folder", opts)
    archive = explore(archives[kind], tmp_path / kind, opts)
    for key in ("images", "classes", "gallery", "properties", "gradability"):  # a folder's train/ is explored as the images' root
        assert json.loads(json.dumps(archive[key]).replace('"train/', '"')) == folder[key], key
    assert folder["gradability"]["least"]  # the least gradable sheet is read from a streamed source too
    for sheet in ("gallery.png", "least_gradable.png"):
        assert (tmp_path / kind / sheet).read_bytes() == (tmp_path / "folder" / sheet).read_bytes(), sheet


def test_explore_shards_beside_the_competition_zip_they_came_from(archives: dict[str, Path], tmp_path: Path) -> None:
    from sightx.explore import ExploreOptions, explore

    run(archives["competition"], tmp_path / "shards", _opts())
    summary = explore(tmp_path / "shards", tmp_path / "report", ExploreOptions(raw=str(archives["competition"]), progress=False))
    assert summary["before_after"]["shown"] > 0 and summary["before_after"]["raw"].startswith(str(archives["competition"]))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Kaggle-layout set with ungradable shots and one broken file, for the other datasets' layouts."""
    root = tmp_path_factory.mktemp("generated")
    generate(root, SynthOptions(n=10, seed=4, sizes=((640, 427),), corrupt=1, ungradable_rate=0.3, workers=1, progress=False))
    return root


def _sample_grades(out: Path) -> dict[str, int]:
    """image id -> grade of every sample in the shards, from their .json."""
    grades = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                    grades[Path(meta["source"]).stem] = meta["grade"]
    return grades


@pytest.mark.parametrize("layout", ["aptos", "idrid", "messidor2", "ddr"])
def test_synth_layouts_of_other_datasets_shard_end_to_end(generated: Path, tmp_path: Path, layout: str) -> None:
    import csv

    from sightx.synth.layouts import write_layout

    truth_rows = list(csv.DictReader(open(generated / "synthTruth.csv", newline="")))
    truth = {Path(r["path"]).stem: int(r["grade"]) for r in truth_rows}
    ungradable = {Path(r["path"]).stem for r in truth_rows if r.get("ungradable")}
    assert ungradable, "the fixture must hold ungradable shots for this test to mean anything"
    root = tmp_path / "set"
    shutil.copytree(generated, root)
    written = write_layout(root, layout, seed=1)
    assert not (root / "train").exists() and not (root / "trainLabels.csv").exists()
    m = run(written.images, tmp_path / "out", _opts(labels=str(written.labels) if written.labels else None))
    assert m["run"]["label_format"] == layout
    present = {p.stem for p in written.images.iterdir()}
    rejects = {Path(r["source"]).stem: r["reason"] for r in csv_rows(tmp_path / "out")}
    marked = ungradable & present if layout in ("messidor2", "ddr") else set()  # APTOS and IDRiD grade every photo
    assert marked or layout in ("aptos", "idrid")
    assert {k for k, v in rejects.items() if v == "ungradable-label"} == marked
    samples = _sample_grades(tmp_path / "out")
    assert samples and all(truth[k] == g for k, g in samples.items())  # every grade carried over as generated
    assert set(samples) | set(rejects) == present and m["summary"]["inputs"] == len(present)
    if layout == "ddr":  # DDR's three splits hold every generated photo once
        splits = [{p.stem for p in (root / "DR_grading" / s).iterdir()} for s in ("train", "valid", "test")]
        assert sum(map(len, splits)) == len(truth) and set().union(*splits) == set(truth)


def test_synth_cli_writes_a_layout_and_says_how_to_shard_it(tmp_path: Path) -> None:
    from sightx.cli import synth as synth_cli

    args = [str(tmp_path / "aptos"), "--n", "2", "--size", "640x427", "--workers", "1", "--quiet", "--archive", "aptos"]
    res = CliRunner().invoke(synth_cli, args)
    assert res.exit_code == 0, res.output
    assert f"sightx-shard '{tmp_path / 'aptos' / 'train_images'}' shards/" in res.output
    assert (tmp_path / "aptos" / "train.csv").read_text().startswith("id_code,diagnosis\n")
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in (tmp_path / "aptos" / "train_images").iterdir())
    res = CliRunner().invoke(synth_cli, [*args[:1], "--n", "2", "--with-test", "2", "--archive", "ddr", "--quiet"])
    assert res.exit_code == 2 and "no unlabelled test folder" in res.output
