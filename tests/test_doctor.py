"""sightx-doctor and sightx-fetch: the doctor in this venv and in a real bare interpreter, every
data problem on real synthetic folders, zips, split parts, competition zips and tars, the Kaggle
token rules, and sightx-fetch's checks before the network and the real client's failure without one."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from blocked import BLOCKER
from click.testing import CliRunner

import sightx
from sightx.cli import fetch as fetch_command
from sightx.cli import shard as shard_command
from sightx.doctor import Context, fetch, packages
from sightx.doctor.data import path_checks
from sightx.doctor.token import find_token
from sightx.sources.survey import survey
from sightx.synth.archive import write_kaggle
from sightx.synth.generate import SynthOptions, generate

CHECKOUT = Path(sightx.__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PYTHONPATH": str(CHECKOUT), **extra}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Kaggle-layout set: train/*.jpeg + trainLabels.csv, and a test/ folder."""
    root = tmp_path_factory.mktemp("doctor_raw")
    generate(root, SynthOptions(n=8, seed=5, sizes=((512, 341),), n_test=2, workers=1, progress=False))
    return root


def _zip_bytes(files: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _train_files(raw: Path) -> dict[str, bytes]:
    return {f"train/{p.name}": p.read_bytes() for p in sorted((raw / "train").iterdir())}


def _split(data: bytes, n: int) -> list[bytes]:
    step = -(-len(data) // n)
    return [data[i * step : (i + 1) * step] for i in range(n)]


def _lines(checks: list) -> str:
    return "\n".join(f"{c.status} {c.detail}" for c in checks)


# --- the doctor as people run it ---------------------------------------------------------------


def test_doctor_in_project_venv_is_ok_or_honest_warns(raw: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sightx.doctor", str(raw), "--quick", "--json", "--out", str(tmp_path / "shards")],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    fails = [c for c in doc["checks"] if c["status"] == "fail"]
    assert proc.returncode == 0 and not fails, fails
    sections = {c["section"] for c in doc["checks"]}
    assert sections == {"environment", "packages", "compute", "decoding", "data"}
    by_name = {(c["section"], c["name"]): c for c in doc["checks"]}
    assert by_name[("packages", "torch")]["status"] == "ok"
    assert by_name[("compute", "cpu")]["data"]["images_per_s"] > 0
    assert by_name[("decoding", "decode rate")]["data"]["scaled_ms"] > 0
    folder = [c for c in doc["checks"] if c["name"] == str(raw)]
    assert "8 image(s), 2 test" in folder[0]["detail"]
    assert any("measured on a generated photo" in c["detail"] for c in folder)


def test_doctor_in_bare_interpreter_fails_with_fixes_and_no_traceback(raw: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=60)
    python = bare / "bin" / "python"
    # The shell activated the project venv, but the bare interpreter runs: numpy is named as elsewhere.
    proc = subprocess.run(
        [str(python), "-m", "sightx.doctor", str(raw)],
        capture_output=True,
        text=True,
        env=_env(VIRTUAL_ENV=sys.prefix),
        cwd=tmp_path,
        timeout=60,
    )
    out = proc.stdout
    assert proc.returncode == 1
    assert "Traceback" not in out + proc.stderr, out + proc.stderr
    for section in ("environment", "packages", "compute", "decoding", "data"):
        assert f"\n{section}\n" in out
    assert re.search(
        r"FAIL  numpy: cannot import numpy \(ModuleNotFoundError.*installed in another environment: .*" + re.escape(sys.prefix), out
    )
    assert "FAIL  torch: cannot import torch" in out
    assert "FAIL  jpeg: cannot import simplejpeg" in out
    assert "fix:" in out and ("pip install" in out or "make install" in out or "-m sightx.doctor" in out)
    assert "warn  environment: the shell activated" in out
    assert "folder: 8 image(s), 2 test" in out  # the data checks need only the standard library

    proc = subprocess.run(
        [str(python), "-m", "sightx.doctor", "--json"], capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=60
    )
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["ok"] is False and doc["counts"]["fail"] >= 10
    numpy = next(c for c in doc["checks"] if c["name"] == "numpy")
    assert numpy["status"] == "fail" and numpy["fix"]


# --- data ---------------------------------------------------------------------------------------


def test_folder_labels_and_images_disagree(raw: Path, tmp_path: Path) -> None:
    ctx = Context(out=tmp_path / "shards")
    lines = _lines(list(path_checks(raw, ctx)))
    assert "every image has a label and every label an image (8)" in lines
    assert re.search(r"ok shards at --size 512: about .* free at", lines)

    copy = tmp_path / "copy"
    (copy / "train").mkdir(parents=True)
    images = sorted((raw / "train").iterdir())
    for p in images[1:]:
        (copy / "train" / p.name).write_bytes(p.read_bytes())
    (copy / "train" / "999_left.jpeg").write_bytes(b"")
    (copy / "trainLabels.csv").write_text((raw / "trainLabels.csv").read_text())
    lines = _lines(list(path_checks(copy, ctx)))
    assert f"1 label(s) without an image ({images[0].stem})" in lines
    assert "1 image(s) without a label (999_left)" in lines
    assert "1 empty (0-byte) image file(s)" in lines

    # A label file sightx-shard refuses is refused here in its words (the same parser).
    (copy / "trainLabels.csv").write_text((raw / "trainLabels.csv").read_text() + "999_left,7\n")
    lines = _lines(list(path_checks(copy, ctx)))
    assert f"fail {copy / 'trainLabels.csv'}: grade not in 0-4 on line(s) 10 ('999_left'='7')" in lines

    lines = _lines(list(path_checks(tmp_path / "nowhere", ctx)))
    assert "fail" in lines and "does not exist" in lines


def test_zip_and_truncated_zip(raw: Path, tmp_path: Path) -> None:
    data = _zip_bytes({**_train_files(raw), "trainLabels.csv": (raw / "trainLabels.csv").read_bytes()}, zipfile.ZIP_DEFLATED)
    whole = tmp_path / "train.zip"
    whole.write_bytes(data)
    found = survey(whole)
    assert (found.kind, len(found.images), len(found.labels or ()), found.problems) == ("zip", 8, 8, [])
    assert found.extract_bytes == sum(len(b) for b in _train_files(raw).values())

    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: len(data) - 100])
    assert survey(cut).problems == [
        f"{cut} is not a zip archive (no end-of-central-directory record): truncated download or another format"
    ]


def test_split_parts_missing_and_truncated(raw: Path, tmp_path: Path) -> None:
    data = _zip_bytes(_train_files(raw))
    parts = _split(data, 3)
    for i, part in enumerate(parts, 1):
        (tmp_path / f"train.zip.{i:03d}").write_bytes(part)
    (tmp_path / "trainLabels.csv").write_text((raw / "trainLabels.csv").read_text())
    found = survey(tmp_path / "train.zip.001")
    assert (found.kind, len(found.images), len(found.labels or ()), found.problems) == ("split-zip", 8, 8, [])

    (tmp_path / "train.zip.003").write_bytes(parts[2][:-30])
    assert survey(tmp_path / "train.zip.001").problems == [
        "train.zip.001..train.zip.003 (3 parts): no zip end record at the end of the last part: a part is missing or truncated"
    ]
    (tmp_path / "train.zip.003").write_bytes(parts[2])
    (tmp_path / "train.zip.001").write_bytes(parts[0][:-1000])  # the first part short: it is named, not the one after it
    assert survey(tmp_path / "train.zip.003").problems == [
        f"{tmp_path / 'train.zip.001'} is {len(parts[0]) - 1000:,} bytes where {tmp_path / 'train.zip.002'} is {len(parts[1]):,}: "
        "a truncated download, fetch it again"
    ]
    (tmp_path / "train.zip.001").write_bytes(parts[0])
    (tmp_path / "train.zip.002").unlink()
    assert survey(tmp_path / "train.zip.001").problems == [f"{tmp_path}: train.zip.002 is missing (found 2 part(s)): download it again"]


def test_a_folder_of_parts_with_a_gap_reads_as_sightx_shard_reads_it(tmp_path: Path) -> None:
    """Kaggle's parts pulled out of the download, one lost: the doctor's line is sightx-shard's."""
    generate(tmp_path / "synth", SynthOptions(n=6, seed=2, sizes=((256, 171),), workers=1, progress=False))
    with zipfile.ZipFile(write_kaggle(tmp_path / "synth")) as zf:
        for name in ("train.zip.001", "train.zip.003", "trainLabels.csv.zip"):
            (tmp_path / "download" / name).parent.mkdir(exist_ok=True)
            (tmp_path / "download" / name).write_bytes(zf.read(name))
    download = tmp_path / "download"
    expected = f"{download}: train.zip.002 is missing (found 2 part(s)): download it again"
    checks = list(path_checks(download, Context(out=tmp_path / "shards")))
    assert [(c.status, c.detail) for c in checks] == [("fail", expected)]
    result = CliRunner().invoke(shard_command, [str(download), str(tmp_path / "shards"), "--quiet"])
    assert (result.exit_code, result.output) == (1, f"Error: {expected}\n")


def test_zip64_end_record_is_read(raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real train.zip is ~35 GB: zip64. A low ZIP64_LIMIT makes zipfile write a genuine zip64 end."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
    data = _zip_bytes(_train_files(raw))
    assert b"PK\x06\x06" in data[-200:]
    monkeypatch.undo()
    parts = _split(data, 2)
    for i, part in enumerate(parts, 1):
        (tmp_path / f"train.zip.{i:03d}").write_bytes(part)
    found = survey(tmp_path / "train.zip.001")
    assert (len(found.images), found.problems) == (8, [])
    (tmp_path / "train.zip.002").write_bytes(parts[1][100:])  # bytes lost at the start of the last part
    assert "bytes are missing (a truncated part?)" in survey(tmp_path / "train.zip.001").problems[0]


def _competition(raw: Path, path: Path, drop: tuple[str, ...] = (), cut: dict[str, int] | None = None) -> Path:
    """A synthetic download in Kaggle's layout: train.zip.001-005, test.zip.001-007, trainLabels.csv.zip, samples."""
    members: dict[str, bytes] = {}
    for i, part in enumerate(_split(_zip_bytes(_train_files(raw)), 5), 1):
        members[f"train.zip.{i:03d}"] = part
    test = {f"test/{p.name}": p.read_bytes() for p in sorted((raw / "test").iterdir())}
    for i, part in enumerate(_split(_zip_bytes(test), 7), 1):
        members[f"test.zip.{i:03d}"] = part
    members["trainLabels.csv.zip"] = _zip_bytes({"trainLabels.csv": (raw / "trainLabels.csv").read_bytes()}, zipfile.ZIP_DEFLATED)
    members["sample.zip"] = _zip_bytes({"sample/x.jpeg": b""})
    members["sampleSubmission.csv.zip"] = _zip_bytes({"sampleSubmission.csv": b"image,level\n"})
    for name, n in (cut or {}).items():
        members[name] = members[name][:n]
    path.write_bytes(_zip_bytes({k: v for k, v in members.items() if k not in drop}))
    return path


def test_competition_zip_verified(raw: Path, tmp_path: Path) -> None:
    path = _competition(raw, tmp_path / "diabetic-retinopathy-detection.zip")
    found, problems = fetch.verify(path, fetch.Expected(size=None, train_images=None))
    assert (found.kind, len(found.images), found.test_images, len(found.labels or ()), problems) == ("competition", 8, 2, 8, [])
    # Against the real download's numbers this one is too small, and says so.
    _, problems = fetch.verify(path)
    assert problems == [
        f"{path.name} is {path.stat().st_size:,} bytes, Kaggle's is 88,310,951,633",
        "train.zip holds 8 images, Kaggle's 35,126",
        "trainLabels.csv has 8 rows, Kaggle's 35,126",
    ]


def test_competition_zip_missing_and_truncated_parts(raw: Path, tmp_path: Path) -> None:
    relaxed = fetch.Expected(size=None, train_images=None)
    a = _competition(raw, tmp_path / "a.zip", drop=("train.zip.003",))
    assert fetch.verify(a, relaxed)[1] == [f"{a}: train.zip.003 is missing from the download: fetch it again"]
    b = _competition(raw, tmp_path / "b.zip", drop=("test.zip.007", "sample.zip"))
    assert fetch.verify(b, relaxed)[1] == [
        f"{b}:test.zip.001..test.zip.006: no zip end record at the end of the last part: a part is missing or truncated",
        "b.zip lacks sample.zip",
        "b.zip lacks test.zip.007",
    ]
    c = _competition(raw, tmp_path / "c.zip", cut={"train.zip.005": 10})
    assert fetch.verify(c, relaxed)[1] == [
        f"{c}:train.zip.001..train.zip.005: no zip end record at the end of the last part: a part is missing or truncated"
    ]
    d = _competition(raw, tmp_path / "d.zip", cut={"train.zip.002": 10})
    full = len(_split(_zip_bytes(_train_files(raw)), 5)[0])
    assert fetch.verify(d, relaxed)[1] == [
        f"{d}: train.zip.002 is 10 bytes where train.zip.001 is {full:,}: a truncated download, fetch it again"
    ]


def test_tar_and_truncated_tar(raw: Path, tmp_path: Path) -> None:
    path = tmp_path / "eyepacs.tar"
    with tarfile.open(path, "w") as tf:
        tf.add(raw / "train", "train")
    (tmp_path / "trainLabels.csv").write_bytes((raw / "trainLabels.csv").read_bytes())  # beside it, where sightx-shard looks
    found = survey(path)
    assert (found.kind, len(found.images), len(found.labels or ()), found.problems) == ("tar", 8, 8, [])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert survey(path).problems == [f"{path}: damaged or truncated tar (ReadError: unexpected end of data)"]


# --- Kaggle token and sightx-fetch --------------------------------------------------------------


@pytest.fixture
def kaggle_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "kaggle-config"
    folder.mkdir()
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(folder))
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    return folder


def _write_token(folder: Path, mode: int = 0o600) -> Path:
    path = folder / "kaggle.json"
    path.write_text(json.dumps({"username": "someone", "key": "0123456789abcdef"}))
    path.chmod(mode)
    return path


def test_token_rules(kaggle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = find_token()
    assert not token.ok and "kaggle.json is missing" in token.problem and "kaggle.com/settings" in token.fix
    path = _write_token(kaggle_dir, 0o644)
    token = find_token()
    assert not token.ok and "mode 644" in token.problem and token.fix == f"chmod 600 {path}"
    path.chmod(0o600)
    assert find_token().ok
    path.write_text("{not json")
    assert "not readable JSON" in find_token().problem
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    assert "KAGGLE_KEY is not set" in find_token().problem
    monkeypatch.setenv("KAGGLE_KEY", "k")
    assert find_token().source == "environment"


def test_fetch_checks_before_the_network(kaggle_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(fetch_command, ["--check", "--to", str(tmp_path / "data")])
    assert result.exit_code == 1 and result.output.startswith("Error: no Kaggle API token:") and result.output.count("\n") == 1
    path = _write_token(kaggle_dir, 0o640)
    result = runner.invoke(fetch_command, ["--check", "--to", str(tmp_path / "data")])
    assert result.exit_code == 1 and f"chmod 600 {path}" in result.output
    path.chmod(0o600)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(fetch_command, ["--check", "--to", str(blocker / "data")])
    assert result.exit_code == 1 and f"Error: cannot write to {blocker / 'data'}" in result.output
    # Disk: the 88.3 GB download plus ~8 GB of shards, against what this machine has free.
    result = runner.invoke(fetch_command, ["--check", "--to", str(tmp_path / "data"), "--shards", str(tmp_path / "shards")])
    need = fetch.DOWNLOAD_BYTES + (fetch.TRAIN_IMAGES + fetch.TEST_IMAGES) * 93_000
    if os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize < need:
        assert result.exit_code == 1 and "Error: not enough disk at" in result.output
    else:
        assert result.exit_code == 0 and result.output.startswith("ready:")


def test_fetch_without_network_is_one_line(kaggle_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("kaggle.api.kaggle_api_extended")
    _write_token(kaggle_dir)
    opts = fetch.FetchOptions(to=tmp_path)
    with pytest.raises(fetch.FetchError) as e:
        fetch.download(fetch.client(), opts)
    assert str(e.value).startswith("no network: cannot reach Kaggle (") and "\n" not in str(e.value)


# --- contracts ----------------------------------------------------------------------------------


def test_doctor_lists_match_the_project() -> None:
    import tomllib

    deps = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [f"{dist}{req}" for _, dist, req in packages.REQUIRED] == deps


def test_doctor_package_imports_only_the_standard_library() -> None:
    heavy = "('numpy', 'torch', 'cv2', 'click', 'pandas', 'deflate', 'PIL', 'simplejpeg')"
    modules = "sightx.doctor, sightx.doctor.__main__, sightx.doctor.data, sightx.sources.survey, sightx.doctor.fetch"
    code = f"import sys, {modules}; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_data_checks_run_with_pandas_numpy_and_deflate_not_installed(raw: Path, tmp_path: Path) -> None:
    """What `python -m sightx.doctor` meets before SightX's packages are installed: the data checks
    open a zip and the competition zip through sightx.sources on the standard library alone, and
    say the label file they found waits for pandas."""
    zipped = tmp_path / "train.zip"
    zipped.write_bytes(_zip_bytes(_train_files(raw), zipfile.ZIP_DEFLATED))
    (tmp_path / "trainLabels.csv").write_bytes((raw / "trainLabels.csv").read_bytes())
    (tmp_path / "kaggle").mkdir()
    competition = _competition(raw, tmp_path / "kaggle" / "diabetic-retinopathy-detection.zip")
    code = """
from pathlib import Path
from sightx.doctor.context import Context
from sightx.doctor.data import path_checks
for path in sys.argv[2:]:
    for c in path_checks(Path(path), Context(out=Path(path).parent / "shards")):
        print(c.status, c.detail)
print(sorted(m for m in ("numpy", "pandas", "deflate") if m in sys.modules))
"""
    blocked = "numpy,pandas,deflate,PIL,simplejpeg,cv2,torch,click"
    cmd = [sys.executable, "-c", BLOCKER + code, blocked, str(zipped), str(competition)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    labels, inner = tmp_path / "trainLabels.csv", f"{competition}:trainLabels.csv.zip:trainLabels.csv"
    assert f"ok zip: 8 image(s); labels {labels} (not read)" in lines
    assert f"warn {labels} not read: pandas cannot be imported here" in lines
    assert f"ok the Kaggle competition zip: 8 image(s), 2 test; labels {inner} (not read)" in lines
    assert not [line for line in lines if line.startswith("fail")] and lines[-1] == "[]"


def test_kernel_spec_found_and_stale_one_flagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sightx.doctor import env

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path))
    assert env.registered_kernel() is None
    spec = tmp_path / "kernels" / "sightx" / "kernel.json"
    spec.parent.mkdir(parents=True)
    # What `python -m ipykernel install --name sightx --display-name SightX` writes.
    argv = [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.write_text(json.dumps({"argv": argv, "display_name": "SightX", "language": "python"}))
    assert env.registered_kernel() == (spec, argv)
    spec.write_text(json.dumps({"argv": [str(tmp_path / "gone/bin/python"), *argv[1:]], "display_name": "SightX"}))
    check = env._jupyter()
    assert check.status == "warn" and "no longer exists" in check.detail and "make kernel" in check.fix


def test_cli_doctor_exits_1_on_a_fail(tmp_path: Path) -> None:
    from sightx.cli import doctor

    result = CliRunner().invoke(doctor, [str(tmp_path / "nowhere"), "--quick", "--out", str(tmp_path / "shards")])
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    assert f"FAIL  {tmp_path / 'nowhere'}: input {tmp_path / 'nowhere'} does not exist" in result.output
    assert result.output.rstrip().endswith("1 fail")
