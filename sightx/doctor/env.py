"""Interpreter and environment: which Python runs, in which venv or conda env, where `sightx` comes
from, and inside Jupyter which interpreter the kernel runs. The wrong interpreter is the commonest
lost afternoon: packages installed, in another environment."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from sightx.doctor.check import FAIL, OK, WARN, Check

SECTION = "environment"
KERNEL_NAME = "sightx"  # `make kernel`: ipykernel install --name sightx --display-name SightX
KERNEL_DISPLAY = "SightX"


def checkout() -> Path:
    """The folder holding the `sightx` package being run (a checkout, or site-packages)."""
    return Path(__file__).resolve().parents[2]


def project_venv() -> Path | None:
    """The checkout's own .venv (what `make install` creates), if there is one."""
    venv = checkout() / ".venv"
    return venv if (venv / "pyvenv.cfg").is_file() else None


def venv_python(prefix: Path) -> Path:
    return prefix / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def in_project_venv() -> bool:
    venv = project_venv()
    return venv is not None and Path(sys.prefix).resolve() == venv.resolve()


def install_fix() -> str:
    """The command that installs SightX's dependencies for the interpreter running now."""
    venv = project_venv()
    if venv is not None and not in_project_venv():
        return f"use the project's environment: {venv_python(venv)} -m sightx.doctor (or `make install`)"
    here = checkout()
    if not (here / "pyproject.toml").is_file():
        return f"{sys.executable} -m pip install sightx"
    pip = "" if _has_pip() else f"{sys.executable} -m ensurepip && "
    if venv is None and sys.prefix == sys.base_prefix:
        return f"cd {here} && make install   # creates .venv with every dependency"
    return f"{pip}{sys.executable} -m pip install -e '{here}[test]'"


def _has_pip() -> bool:
    from importlib.util import find_spec

    return find_spec("pip") is not None


def in_jupyter_kernel() -> bool:
    """True inside an IPython kernel (a notebook cell, `%run`), not a terminal IPython."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and "ipykernel" in sys.modules and hasattr(shell, "kernel")


def checks() -> Iterator[Check]:
    yield _interpreter()
    yield _environment()
    yield _sightx()
    yield _commands()
    yield _jupyter()


def _interpreter() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    data = {"executable": sys.executable, "version": version, "prefix": sys.prefix}
    if sys.version_info < (3, 10):  # noqa: UP036 - the doctor itself runs on older Pythons, to say so
        return Check(
            SECTION,
            "python",
            FAIL,
            f"{sys.executable} is Python {version}; SightX needs 3.10+",
            "install Python 3.11 and `make install`",
            data,
        )
    return Check(SECTION, "python", OK, f"{sys.executable} (Python {version})", data=data)


def _environment() -> Check:
    prefix = Path(sys.prefix)
    conda = os.environ.get("CONDA_DEFAULT_ENV") if (prefix / "conda-meta").is_dir() else None
    active = os.environ.get("VIRTUAL_ENV")
    venv = project_venv()
    data = {
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "conda_env": conda,
        "virtual_env": active,
        "project_venv": str(venv or ""),
    }
    if active and Path(active).resolve() != prefix.resolve():
        return Check(
            SECTION,
            "environment",
            WARN,
            f"the shell activated {active}, but this is {sys.executable} (an older `python` on PATH, or an IDE's own choice)",
            f"{venv_python(Path(active))} -m sightx.doctor",
            data,
        )
    if in_project_venv():
        return Check(SECTION, "environment", OK, f"the project's virtual environment ({prefix})", data=data)
    where = (
        f"conda env {conda!r} ({prefix})"
        if conda
        else (f"virtual environment {prefix}" if prefix != Path(sys.base_prefix) else f"system Python ({prefix})")
    )
    if venv is not None:
        return Check(SECTION, "environment", WARN, f"{where}, not the project's {venv}", f"source {venv}/bin/activate", data)
    if prefix == Path(sys.base_prefix) and not conda:
        return Check(
            SECTION,
            "environment",
            WARN,
            f"{where}: installing here mixes SightX's pins with the system's",
            f"cd {checkout()} && make install",
            data,
        )
    return Check(SECTION, "environment", OK, where, data=data)


def _sightx() -> Check:
    import sightx

    here = Path(sightx.__file__).resolve().parent
    data: dict[str, object] = {"path": str(here), "version": getattr(sightx, "__version__", "")}
    try:
        dist = metadata.distribution("sightx")
    except metadata.PackageNotFoundError:
        return Check(
            SECTION,
            "sightx",
            WARN,
            f"imported from {here} (PYTHONPATH or the current folder), not installed here: no sightx-* commands",
            install_fix(),
            data,
        )
    installed = _installed_location(dist)
    data["installed"] = str(installed or "")
    if installed is not None and installed.resolve() != here.parent:
        return Check(
            SECTION,
            "sightx",
            WARN,
            f"imported from {here}, but this interpreter's installed sightx is {installed}: two checkouts",
            f"{sys.executable} -m pip install -e {here.parent}",
            data,
        )
    return Check(SECTION, "sightx", OK, f"sightx {dist.version} from {here}", data=data)


def _installed_location(dist: metadata.Distribution) -> Path | None:
    """Where an installed (or editable) sightx lives; None when the metadata does not say."""
    raw = dist.read_text("direct_url.json")
    if raw:
        url = json.loads(raw).get("url", "")
        if url.startswith("file://"):
            return Path(url[len("file://") :])
    files = dist.files or []
    init = next((f for f in files if str(f).replace("\\", "/") == "sightx/__init__.py"), None)
    return Path(str(dist.locate_file(init))).parent.parent if init is not None else None


def _commands() -> Check:
    """`sightx-shard` on PATH must be this interpreter's, or the commands run elsewhere."""
    found = shutil.which("sightx-shard")
    own = Path(sys.executable).parent / ("sightx-shard.exe" if os.name == "nt" else "sightx-shard")
    data = {"on_path": found or "", "beside_python": str(own) if own.exists() else ""}
    if found is None:
        if own.exists():
            return Check(
                SECTION, "commands", WARN, f"sightx-* are in {own.parent}, which is not on PATH", f"export PATH={own.parent}:$PATH", data
            )
        return Check(
            SECTION, "commands", WARN, "no sightx-* commands for this interpreter (sightx is not installed in it)", install_fix(), data
        )
    if own.exists() and Path(found).resolve() != own.resolve():
        return Check(
            SECTION,
            "commands",
            WARN,
            f"sightx-shard on PATH is {found}, not this interpreter's {own}",
            f"export PATH={own.parent}:$PATH",
            data,
        )
    if not own.exists():
        return Check(
            SECTION,
            "commands",
            WARN,
            f"sightx-shard on PATH is {found}, from another environment than {sys.executable}",
            install_fix(),
            data,
        )
    return Check(SECTION, "commands", OK, f"sightx-* from {own.parent}", data=data)


def kernel_dirs() -> list[Path]:
    """Where Jupyter looks for kernel specs, as jupyter_core.paths.jupyter_path('kernels') orders them."""
    home = Path.home()
    dirs = [Path(p) for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    if os.environ.get("JUPYTER_DATA_DIR"):
        dirs.append(Path(os.environ["JUPYTER_DATA_DIR"]))
    elif sys.platform == "darwin":
        dirs.append(home / "Library/Jupyter")
    elif os.name == "nt":
        dirs.append(Path(os.environ.get("APPDATA", home)) / "jupyter")
    else:
        dirs.append(Path(os.environ.get("XDG_DATA_HOME") or home / ".local/share") / "jupyter")
    dirs += [Path(sys.prefix) / "share/jupyter", Path("/usr/local/share/jupyter"), Path("/usr/share/jupyter")]
    return [d / "kernels" for d in dirs]


def registered_kernel() -> tuple[Path, list[str]] | None:
    """The SightX kernel spec (its kernel.json and argv), if one is registered."""
    for folder in kernel_dirs():
        spec = folder / KERNEL_NAME / "kernel.json"
        if spec.is_file():
            try:
                argv = json.loads(spec.read_text()).get("argv", [])
            except (OSError, ValueError):
                argv = []
            return spec, [str(a) for a in argv]
    return None


def _jupyter() -> Check:
    kernel = registered_kernel()
    data: dict[str, object] = {"in_kernel": in_jupyter_kernel(), "kernel_spec": str(kernel[0]) if kernel else ""}
    if in_jupyter_kernel():
        if _deps_importable():
            return Check(SECTION, "jupyter", OK, f"this notebook's kernel runs {sys.executable}, which has SightX's packages", data=data)
        return Check(
            SECTION,
            "jupyter",
            FAIL,
            f"this notebook's kernel runs {sys.executable}, which lacks SightX's packages",
            f"cd {checkout()} && make kernel, then Kernel > Change kernel > {KERNEL_DISPLAY}",
            data,
        )
    if kernel is None:
        status = WARN if shutil.which("jupyter") else OK
        return Check(
            SECTION, "jupyter", status, f"no {KERNEL_DISPLAY} kernel registered (for notebooks)", f"cd {checkout()} && make kernel", data
        )
    spec, argv = kernel
    python = Path(argv[0]) if argv else None
    if python is None or not python.exists():
        return Check(
            SECTION,
            "jupyter",
            WARN,
            f"kernel {KERNEL_DISPLAY} ({spec}) runs {python}, which no longer exists",
            f"cd {checkout()} && make kernel",
            data,
        )
    venv = project_venv()
    if venv is not None and os.path.abspath(python) != os.path.abspath(
        venv_python(venv)
    ):  # not resolve(): a venv's python links to the base
        return Check(
            SECTION,
            "jupyter",
            WARN,
            f"kernel {KERNEL_DISPLAY} runs {python}, not the project's {venv_python(venv)}",
            f"cd {checkout()} && make kernel",
            data,
        )
    return Check(SECTION, "jupyter", OK, f"kernel {KERNEL_DISPLAY} registered, runs {python}", data=data)


def _deps_importable() -> bool:
    from importlib.util import find_spec

    return all(find_spec(name) is not None for name in ("numpy", "torch", "cv2", "simplejpeg"))
