"""Optional extras missing for real: a child Python whose import machinery cannot find them.

Each test runs the real CLI in a subprocess with a meta-path finder in front of every other one,
so `import distributed` (or `dask`) fails there exactly as it does where the extra was never
installed, whatever this environment holds. Nothing of SightX is replaced.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from blocked import BLOCKER

CLI = """
import sightx.cli
getattr(sightx.cli, sys.argv[2])(sys.argv[3:], prog_name="sightx-" + sys.argv[2])
"""


def _without(packages: str, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKER + CLI, packages, command, *args], capture_output=True, text=True, timeout=120)


def test_the_blocker_hides_an_installed_package() -> None:
    pytest.importorskip("distributed")  # installed here, so only the blocker can make the import fail
    proc = subprocess.run([sys.executable, "-c", BLOCKER + "import distributed", "distributed,dask"], capture_output=True, text=True)
    assert proc.returncode == 1 and "ModuleNotFoundError: No module named 'distributed'" in proc.stderr


@pytest.mark.parametrize("executor", [["--executor", "dask-local"], ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"]])
def test_asking_for_dask_without_the_extra_is_one_line_naming_the_install(tiny_raw: Path, tmp_path: Path, executor: list[str]) -> None:
    out = tmp_path / "shards"
    proc = _without("distributed,dask", "shard", str(tiny_raw / "train"), str(out), *executor, "--quiet")
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line == "Error: the dask executors need Dask distributed: pip install 'sightx[dask]' (or: pip install distributed)"
    assert not out.exists()  # refused before the output folder is touched


def test_benchmarking_dask_without_the_extra_is_the_same_one_line(tmp_path: Path) -> None:
    proc = _without("distributed,dask", "bench", "shard", "--quick", "--executor", "dask-local", "--work", str(tmp_path / "w"), "--quiet")
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line == "Error: the dask executors need Dask distributed: pip install 'sightx[dask]' (or: pip install distributed)"


def test_an_fsspec_url_without_fsspec_is_one_line_naming_the_install(tmp_path: Path) -> None:
    proc = _without("fsspec", "train", "s3://bucket/shards", "--out", str(tmp_path / "run"), "--quiet")
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: URLs other than http(s):// are read through fsspec: pip install 'sightx[remote]'")
    assert not (tmp_path / "run").exists()


def test_a_timm_arch_without_the_extra_is_one_line_naming_the_install(tiny_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _without("timm", "train", str(tiny_shards), "--out", str(out), "--arch", "vit_tiny_patch16_224", "--quiet")
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line == (
        "Error: --arch vit_tiny_patch16_224 is not a torchvision model SightX knows; timm models need timm: pip install 'sightx[timm]'"
    )
    assert not out.exists()
