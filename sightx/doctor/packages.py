"""Packages: every dependency imported for real (an installed but broken package fails here, not an
hour into a run), with its version and where it loads from; a missing one is looked for in the other
environments on this machine, so "installed, but in another interpreter" is said as such."""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from sightx.doctor import env
from sightx.doctor.check import FAIL, OK, WARN, Check

SECTION = "packages"

# (import name, distribution, requirement): pyproject.toml's [project] dependencies, in its order
# (tests/test_doctor.py keeps the two equal). Kept here because a bare interpreter has no metadata.
REQUIRED = (
    ("numpy", "numpy", ">=1.24"),
    ("cv2", "opencv-python-headless", ">=4.8"),
    ("PIL", "Pillow", ">=10"),
    ("simplejpeg", "simplejpeg", ">=1.7"),
    ("deflate", "deflate", ">=0.9"),
    ("pandas", "pandas", ">=2.0"),
    ("click", "click", ">=8.1"),
    ("tqdm", "tqdm", ">=4.66"),
    ("matplotlib", "matplotlib", ">=3.7"),
    ("webdataset", "webdataset", ">=0.2.86"),
    ("torch", "torch", "==2.14.1"),
    ("torchvision", "torchvision", "==0.29.1"),
    ("fastapi", "fastapi", ">=0.110"),
    ("uvicorn", "uvicorn", ">=0.29"),
    ("python_multipart", "python-multipart", ">=0.0.18"),
    ("captum", "captum", ">=0.7"),
)
# Optional extras: (import name, distribution, what needs it, extra).
OPTIONAL = (
    ("kaggle", "kaggle", "sightx-fetch", "kaggle"),
    ("ipykernel", "ipykernel", "the SightX Jupyter kernel (`make kernel`)", "kernel"),
    ("onnxruntime", "onnxruntime", "sightx-export --format onnx and grading an .onnx", "export"),
    ("openvino", "openvino", "--runtime openvino (the fastest on CPUs, README)", "export"),
    ("safetensors", "safetensors", "sightx-export --format hub and loading a model folder", "export"),
    ("timm", "timm", "sightx-train --arch with a timm model (ViTs, RETFound)", "timm"),
)


def checks() -> Iterator[Check]:
    for module, dist, requirement in REQUIRED:
        yield _required(module, dist, requirement)
    for module, dist, user, extra in OPTIONAL:
        yield _optional(module, dist, user, extra)


def _version(dist: str, module: object | None = None) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "?"))


def _required(module_name: str, dist: str, requirement: str) -> Check:
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, and the ABI errors a wrongly built wheel raises on import
        reason = f"{type(e).__name__}: {e}".splitlines()[0]
        elsewhere = find_elsewhere(dist)
        detail = f"cannot import {module_name} ({reason})"
        if elsewhere:
            detail += "; installed in another environment: " + ", ".join(f"{p} ({v})" for p, v in elsewhere[:3])
        return Check(SECTION, dist, FAIL, detail, env.install_fix(), {"module": module_name, "elsewhere": [p for p, _ in elsewhere]})
    version = _version(dist, module)
    origin = Path(getattr(module, "__file__", "") or "?").parent
    data = {"module": module_name, "version": version, "path": str(origin), "requirement": requirement}
    if not satisfies(version, requirement):
        return Check(SECTION, dist, FAIL, f"{dist} {version} from {origin}; SightX needs {requirement}", env.install_fix(), data)
    if sys.prefix != sys.base_prefix and not _under(origin, Path(sys.prefix)) and not _under(origin, env.checkout()):
        return Check(
            SECTION,
            dist,
            WARN,
            f"{dist} {version} loads from {origin}, outside this environment ({sys.prefix}): user site-packages or PYTHONPATH shadows it",
            "unset PYTHONPATH; or export PYTHONNOUSERSITE=1",
            data,
        )
    return Check(SECTION, dist, OK, f"{dist} {version} from {origin}", data=data)


def _optional(module_name: str, dist: str, user: str, extra: str) -> Check:
    from importlib.util import find_spec

    if find_spec(module_name) is None:
        return Check(
            SECTION,
            dist,
            OK,
            f"{dist}: not installed (optional, for {user})",
            f"{sys.executable} -m pip install -e '{env.checkout()}[{extra}]'",
        )
    return Check(SECTION, dist, OK, f"{dist} {_version(dist)} (optional, for {user})", data={"version": _version(dist)})


def _under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def satisfies(version: str, requirement: str) -> bool:
    """`>=` and `==` on release numbers: all SightX's requirements use (packaging may be absent)."""

    def release(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:3])

    op, wanted = requirement[:2], requirement[2:]
    if op == "==":
        return release(version) == release(wanted)
    return release(version) >= release(wanted)


def other_environments() -> list[Path]:
    """Site-packages folders of the other Python environments one can find on this machine."""
    home = Path.home()
    prefixes = [env.checkout() / ".venv", Path(sys.base_prefix), Path("/usr"), Path("/usr/local"), Path("/opt/homebrew")]
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        if os.environ.get(var):
            prefixes.append(Path(os.environ[var]))
    for root in (home / "miniconda3", home / "anaconda3", home / "miniforge3", home / "mambaforge", home / ".conda"):
        prefixes += [root, *sorted((root / "envs").glob("*"))]
    prefixes += sorted((home / ".virtualenvs").glob("*"))
    here = Path(sys.prefix).resolve()
    folders: list[Path] = []
    for prefix in prefixes:
        if not prefix.is_dir() or prefix.resolve() == here:
            continue
        folders += sorted(prefix.glob("lib/python3*/site-packages")) + sorted(prefix.glob("lib/python3/dist-packages"))
        folders += [prefix / "Lib/site-packages"] if (prefix / "Lib/site-packages").is_dir() else []
    folders += sorted(home.glob(".local/lib/python3*/site-packages"))
    unique: dict[Path, Path] = {}
    for folder in folders:
        unique.setdefault(folder.resolve(), folder)
    return list(unique.values())


def find_elsewhere(dist: str) -> list[tuple[str, str]]:
    """(environment, version) for each other environment holding `dist`'s metadata."""
    want = re.sub(r"[-_.]+", "_", dist).lower()
    found = []
    for site in other_environments():
        for info in site.glob("*.dist-info"):
            name, _, version = info.name[: -len(".dist-info")].partition("-")
            if re.sub(r"[-_.]+", "_", name).lower() == want:
                found.append((str(_prefix_of(site)), version))
                break
    return found


def _prefix_of(site: Path) -> Path:
    """The environment a site-packages folder belongs to: lib/python3.X/site-packages -> prefix."""
    return site.parents[2] if site.parent.name.startswith("python") else site.parent.parent
