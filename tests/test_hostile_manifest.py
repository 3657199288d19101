"""A shard set is data: names read from its manifest are never run, opened as URLs or followed out of the folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sightx.contracts import manifest as mf
from sightx.train.stream import shard_paths

TRAIN = str(Path(sys.executable).parent / "sightx-train")
EXPLORE = str(Path(sys.executable).parent / "sightx-explore")

HOSTILE_NAMES = [
    "pipe:touch PWNED; cat train-000000.tar",
    "pipe:touch PWNED",
    "/etc/passwd",
    "../train-000000.tar",
    "http://127.0.0.1:9/train-000000.tar",
    "file:train-000000.tar",
    "train-000000.tar; touch PWNED",
    "train-0.tar",
    "train-000000.tar\n",
    "val-000000.tar",  # a valid name under the wrong split
    7,
    None,
]


def _hostile_copy(tiny_shards: Path, dest: Path, name: object) -> Path:
    shutil.copytree(tiny_shards, dest)
    m = json.loads((dest / mf.MANIFEST).read_text())
    train = next(i for i, s in enumerate(m["shards"]) if s["split"] == "train")
    m["shards"][train]["name"] = name
    (dest / mf.MANIFEST).write_text(json.dumps(m))
    return dest


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
def test_manifest_with_a_hostile_shard_name_is_refused_naming_the_field(tiny_shards: Path, tmp_path: Path, name: object) -> None:
    folder = _hostile_copy(tiny_shards, tmp_path / "s", name)
    with pytest.raises(mf.ManifestError, match=r"shards\[\d+\]\.(name|split)"):
        mf.read(folder)


def test_train_from_inside_a_hostile_shard_folder_runs_no_command(tiny_shards: Path, tmp_path: Path) -> None:
    """The reported attack: `sightx-train .` inside a downloaded folder whose manifest names a pipe: URL."""
    folder = _hostile_copy(tiny_shards, tmp_path / "s", "pipe:touch PWNED; cat train-000000.tar")
    for cmd in (
        [
            TRAIN,
            ".",
            "--out",
            str(tmp_path / "run"),
            "--arch",
            "resnet18",
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--workers",
            "0",
            "--quiet",
        ],
        [EXPLORE, ".", "--out", str(tmp_path / "rep"), "--quiet"],
    ):
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "shards[" in lines[0] and "pipe:" in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
    assert not list(folder.rglob("PWNED")) and not (tmp_path / "PWNED").exists()


def test_shard_paths_are_absolute_files_in_the_shard_folder(tiny_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_shards)
    m = mf.read(Path("."))
    paths = shard_paths(Path("."), m, "train")
    assert paths and all(Path(p).is_absolute() and Path(p).parent == tiny_shards.absolute() for p in paths)
    assert all(Path(p).is_file() for p in paths)
    with pytest.raises(mf.ManifestError, match="'name'"):
        mf.shard_file(Path("."), {"name": "pipe:true"})
