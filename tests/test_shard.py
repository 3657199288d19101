"""The shard engine end to end on sightx-synth output: real JPEGs, real tars, real processes."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import pytest
import simplejpeg
import webdataset as wds
from click.testing import CliRunner
from outputs import stable_outputs

from sightx.cli import shard as shard_cli
from sightx.contracts import manifest as mf
from sightx.contracts.rejects import FILE as REJECTS
from sightx.image.preprocess import PreprocessOptions
from sightx.labels.files import LabelError
from sightx.labels.formats import read_labels
from sightx.labels.split import split_patients
from sightx.shard import ShardError, ShardOptions, run
from sightx.shard.plan import make_plan
from sightx.synth.generate import SynthOptions, generate

PRE = PreprocessOptions(size=128, quality=90)


def _opts(**kw) -> ShardOptions:
    base = dict(preprocess=PRE, shard_size=6, val_fraction=0.25, seed=1, workers=1, progress=False)
    return ShardOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    sizes = ((1024, 683), (900, 600))
    generate(root, SynthOptions(n=24, seed=11, sizes=sizes, corrupt=4, n_test=4, workers=2, progress=False, balanced=True))
    return root


@pytest.fixture(scope="module")
def built(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("shards")
    return out, run(raw / "train", out, _opts())


def _read_back(out: Path) -> dict[str, list[dict]]:
    """Every sample, as stock webdataset reads it (no SightX code involved)."""
    samples: dict[str, list[dict]] = {}
    for tar in sorted(out.glob("*.tar")):
        samples[tar.name] = list(wds.WebDataset(str(tar), shardshuffle=False))
    return samples


def _rejects(out: Path) -> list[dict]:
    with open(out / REJECTS, newline="") as f:
        return list(csv.DictReader(f))


def test_every_input_accounted_for(raw: Path, built: tuple[Path, dict]) -> None:
    out, m = built
    inputs = {p.relative_to(raw / "train").as_posix() for p in (raw / "train").glob("*.jpeg")}
    samples = [s for members in _read_back(out).values() for s in members]
    written = [json.loads(s["json"])["source"] for s in samples]
    rejected = [r["source"] for r in _rejects(out)]
    assert len(written) == len(set(written)) and len(rejected) == len(set(rejected))
    assert set(written) | set(rejected) == inputs and not set(written) & set(rejected)
    assert m["summary"]["inputs"] == len(inputs) == m["summary"]["written"] + m["summary"]["rejected"]
    reasons = Counter(r["reason"] for r in _rejects(out))
    assert reasons["truncated"] == 1 and reasons["empty-file"] == 1 and reasons["not-jpeg"] == 2
    assert m["complete"] and not list(out.glob("*.tmp"))


def test_manifest_matches_what_webdataset_reads(built: tuple[Path, dict]) -> None:
    out, m = built
    back = _read_back(out)
    assert {s["name"] for s in m["shards"]} == set(back)
    for rec in m["shards"]:
        members = back[rec["name"]]
        assert rec["count"] == len(members)
        assert rec["grades"] == [sum(int(s["cls"]) == g for s in members) for g in range(5)]
        assert rec["bytes"] == (out / rec["name"]).stat().st_size
        for s in members:
            meta = json.loads(s["json"])
            assert s["__key__"] == meta["key"] and "." not in s["__key__"]
            assert int(s["cls"]) == meta["grade"] and meta["split"] == rec["split"]
            assert set(s) == {"__key__", "__url__", "__local_path__", "jpg", "cls", "json"} - ({"__local_path__"} - set(s))
            w = m["splits"][rec["split"]]["class_weights"]["inverse"][meta["grade"]]
            assert meta["weight"] == w
    for split, info in m["splits"].items():
        assert info["count"] == sum(r["count"] for r in m["shards"] if r["split"] == split)


def test_tar_is_plain_tar_with_fixed_metadata(built: tuple[Path, dict]) -> None:
    out, m = built
    name = m["shards"][0]["name"]
    listing = subprocess.run(["tar", "tf", str(out / name)], capture_output=True, text=True, check=True).stdout.split()
    assert listing and all(n.endswith((".jpg", ".cls", ".json")) for n in listing)
    with tarfile.open(out / name) as tar:
        assert {(i.mtime, i.uid, i.gid, i.uname, i.gname) for i in tar.getmembers()} == {(0, 0, 0, "", "")}


def test_sample_metadata_and_circle_match_ground_truth(raw: Path, built: tuple[Path, dict]) -> None:
    out, _ = built
    truth = {r["path"]: r for r in csv.DictReader(open(raw / "synthTruth.csv"))}
    checked = 0
    for members in _read_back(out).values():
        for s in members:
            meta = json.loads(s["json"])
            t = truth["train/" + meta["source"]]
            if t["ungradable"]:
                continue
            r = float(t["radius"])
            assert abs(meta["circle"]["r"] - r) < 0.02 * r, (meta, t)
            assert abs(meta["circle"]["cx"] - float(t["cx"])) < 0.02 * r
            assert abs(meta["circle"]["cy"] - float(t["cy"])) < 0.02 * r
            assert meta["orig_size"] == [int(t["width"]), int(t["height"])]
            assert meta["decode_scale"] < 1  # the reduced-size decode is used
            patient, eye = meta["image"].split("_")
            assert meta["patient"] == patient and meta["eye"] == eye
            for k in ("brightness", "contrast", "sharpness", "fov_fraction"):
                assert isinstance(meta[k], float)
            checked += 1
    assert checked >= 15


def test_patient_split_has_no_leakage(built: tuple[Path, dict]) -> None:
    out, _ = built
    split_of: dict[str, set[str]] = {}
    for members in _read_back(out).values():
        for s in members:
            meta = json.loads(s["json"])
            split_of.setdefault(meta["patient"], set()).add(meta["split"])
    assert all(len(v) == 1 for v in split_of.values())
    assert {"train", "val"} <= set().union(*split_of.values())


def test_split_is_stratified_exact_and_seeded() -> None:
    grades = {f"p{i}": i % 5 for i in range(1000)}
    a = split_patients(grades, 0.1, seed=3)
    assert len(a.val) == 100 and not a.val & a.train
    assert Counter(grades[p] for p in a.val) == {g: 20 for g in range(5)}
    assert split_patients(grades, 0.1, seed=3) == a and split_patients(grades, 0.1, seed=4) != a


def test_shards_have_the_split_class_mix_within_one() -> None:
    images = [f"{i}_{e}.jpeg" for i in range(400) for e in ("left", "right")]
    labels = {f"{i}_{e}": (0 if i % 10 < 7 else i % 5) for i in range(400) for e in ("left", "right")}
    plan = make_plan(images, labels, shard_size=50, val_fraction=0.1, seed=0, unlabeled=False)
    for split in ("train", "val"):
        tasks = [t for t in plan.tasks if t.split == split]
        per_grade = [[sum(s.grade == g for s in t.samples) for t in tasks] for g in range(5)]
        assert all(max(c) - min(c) <= 1 for c in per_grade)
        assert all(len(t.samples) <= 50 for t in tasks)
    assert sum(len(t.samples) for t in plan.tasks) == 800


def test_same_output_whatever_the_worker_count(raw: Path, built: tuple[Path, dict], tmp_path: Path) -> None:
    out1, m1 = built
    m2 = run(raw / "train", tmp_path, _opts(workers=2))
    assert m2["run"]["built_shards"] == len(m1["shards"]) > 2
    for rec in m1["shards"]:
        assert (out1 / rec["name"]).read_bytes() == (tmp_path / rec["name"]).read_bytes()
    assert (out1 / REJECTS).read_bytes() == (tmp_path / REJECTS).read_bytes()
    assert {k: v for k, v in m1.items() if k != "run"} == {k: v for k, v in m2.items() if k != "run"}


def _done(out: Path) -> int:
    """Shards under their final name: the kill lands right after the next one is committed."""
    return len(list(out.glob("*.tar"))) if out.is_dir() else 0


def test_sigkill_and_resume_is_byte_identical(raw: Path, tmp_path: Path) -> None:
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run(raw / "train", reference, _opts(shard_size=2))
    cmd = [
        str(Path(sys.executable).parent / "sightx-shard"),
        str(raw / "train"),
        str(resumed),
        "--size",
        "128",
        "--quality",
        "90",
        "--shard-size",
        "2",
        "--val-fraction",
        "0.25",
        "--seed",
        "1",
        "--quiet",
    ]
    for workers in ("2", "1"):  # kill twice: once mid-pool, once mid-resume
        before = _done(resumed)
        proc = subprocess.Popen(cmd + ["--workers", workers])
        deadline = time.time() + 120
        while _done(resumed) <= before and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        assert proc.poll() is None, "finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not mf.read(resumed)["complete"]
    # Tamper with one finished shard: the resume must notice (sha256) and rebuild it.
    victim = sorted(resumed.glob("*.tar"))[0]
    victim.write_bytes(victim.read_bytes()[:-1024] + b"\0" * 1024)
    subprocess.run(cmd + ["--workers", "2"], check=True)
    assert stable_outputs(resumed) == stable_outputs(reference)
    again = subprocess.run(cmd + ["--workers", "2"], check=True, capture_output=True, text=True).stdout
    assert f"{len(mf.read(reference)['shards'])} shard(s) resumed, 0 built" in again


def test_changed_options_are_refused_unless_overwrite(raw: Path, tmp_path: Path) -> None:
    run(raw / "train", tmp_path, _opts(shard_size=50))
    with pytest.raises(ShardError, match="other options.*preprocess"):
        run(raw / "train", tmp_path, _opts(shard_size=50, preprocess=PreprocessOptions(size=96)))
    m = run(raw / "train", tmp_path, _opts(shard_size=50, preprocess=PreprocessOptions(size=96), overwrite=True))
    assert m["options"]["preprocess"]["size"] == 96 and m["run"]["resumed_shards"] == 0


def test_unlabeled_test_split_and_missing_labels(raw: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    rows = (raw / "trainLabels.csv").read_text().splitlines()
    labels.write_text("\n".join(rows[:-4] + ["999_left,2"]) + "\n")  # drop 4 labels, add one without image
    out = tmp_path / "a"
    m = run(raw / "train", out, _opts(labels=str(labels), shard_size=50))
    assert m["summary"]["rejected_by_reason"]["no-label"] == 4
    assert m["summary"]["labels_without_image"] == ["999_left"]
    m = run(raw, tmp_path / "b", _opts(labels=str(labels), shard_size=50, unlabeled=True))
    test = [s for t in sorted((tmp_path / "b").glob("test-*.tar")) for s in wds.WebDataset(str(t), shardshuffle=False)]
    assert len(test) == 4 and all("cls" not in s and json.loads(s["json"])["grade"] is None for s in test)
    assert m["splits"]["test"]["count"] == 4


@pytest.mark.parametrize(
    "content, message",
    [
        ("image,grade\n1_left,0\n", "missing column.*level"),
        ("image,level\n1_left,0\n1_right,5\n2_left,x\n", r"not in 0-4 on line\(s\) 3, 4"),
        ("image,level\n1_left,0\n1_left,1\n", "duplicate image id.*1_left.*lines 2, 3"),
    ],
)
def test_malformed_label_file_is_a_one_line_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "trainLabels.csv").write_text(content)
    with pytest.raises(LabelError, match=message):
        read_labels(tmp_path / "trainLabels.csv")
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "1_left.jpeg").write_bytes(b"x")
    res = CliRunner().invoke(shard_cli, [str(tmp_path / "img"), str(tmp_path / "out"), "--quiet", "--workers", "1"])
    assert res.exit_code == 1 and "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # refused before any work


def test_cli_input_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(shard_cli, [str(tmp_path / "nope"), str(tmp_path / "out")])
    assert res.exit_code == 1 and "does not exist" in res.output
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "trainLabels.csv").write_text("image,level\n")
    res = runner.invoke(shard_cli, [str(tmp_path / "empty"), str(tmp_path / "out")])
    assert res.exit_code == 1 and "no .jpeg/.jpg files" in res.output
    res = runner.invoke(shard_cli, [str(tmp_path / "empty"), str(tmp_path / "out"), "--min-quality", "shine=3"])
    assert res.exit_code == 2 and "unknown metric" in res.output


def test_oversized_and_low_quality_inputs_are_rejected_with_reasons(raw: Path, tmp_path: Path) -> None:
    src = tmp_path / "raw"
    shutil.copytree(raw / "train", src)
    shutil.copy(raw / "trainLabels.csv", tmp_path)
    opts = _opts(shard_size=50, preprocess=PreprocessOptions(size=128, max_pixels=650_000), min_quality=(("brightness", 1e6),))
    m = run(src, tmp_path / "out", opts)
    reasons = m["summary"]["rejected_by_reason"]
    assert reasons["too-large"] > 0 and reasons["low-quality"] > 0  # 1024x683 > 650k px; nothing is that bright
    assert m["summary"]["written"] == 0
    assert m["summary"]["inputs"] == m["summary"]["rejected"]


def test_unwritable_output(raw: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ShardError, match="cannot write to output folder"):
        run(raw / "train", blocker / "out", _opts())


def test_cli_chroma_option_reaches_the_shards_and_the_manifest(raw: Path, tmp_path: Path) -> None:
    args = [str(raw / "train"), str(tmp_path / "out"), "--size", "96", "--shard-size", "50", "--quiet", "--workers", "1"]
    res = CliRunner().invoke(shard_cli, [*args, "--chroma", "444"])
    assert res.exit_code == 0, res.output
    assert mf.read(tmp_path / "out")["options"]["preprocess"]["chroma"] == "444"
    sample = next(iter(wds.WebDataset(str(tmp_path / "out" / "train-000000.tar"), shardshuffle=False)))
    assert simplejpeg.decode_jpeg_header(sample["jpg"])[3] == "444"
    res = CliRunner().invoke(shard_cli, args)  # the default, 4:2:0, against 4:4:4 shards: refused
    assert res.exit_code == 1 and "--overwrite" in res.output


@pytest.mark.parametrize("samples", [[], [[("a.jpg", b"x" * 700), ("a.cls", b"3")], [("k" * 120 + ".json", b"{}")]]])
def test_tar_writer_writes_what_tarfile_would(tmp_path: Path, samples: list) -> None:
    # Byte for byte what tarfile writes (long names included), and the hash is of those bytes.
    import hashlib
    import io

    from sightx.shard.task import _TarWriter, tar_block

    with open(tmp_path / "ours.tar", "wb") as f:
        ours = _TarWriter(f)
        for members in samples:
            ours.add_block(tar_block(members))
        ours.close()
    with tarfile.open(tmp_path / "ref.tar", "w", format=tarfile.GNU_FORMAT) as ref:
        for name, data in (m for members in samples for m in members):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o444, "", ""
            ref.addfile(info, io.BytesIO(data))
    written = (tmp_path / "ours.tar").read_bytes()
    assert written == (tmp_path / "ref.tar").read_bytes()
    assert ours.size == len(written) and ours.sha256.hexdigest() == hashlib.sha256(written).hexdigest()
