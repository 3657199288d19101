"""The import rules of docs/architecture.md, enforced: each domain imports only the layers below it,
and the light entry points start without the heavy libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sightx"

# Domain -> the other sightx domains it may import (anywhere in a module: a lazy import is still a dependency).
# Layers, bottom up, as docs/architecture.md draws them; anything not listed is a violation.
CORE = {"errors"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "image": CORE,
    "files": CORE,
    "parallel": CORE,
    "labels": CORE | {"image"},  # image.formats: the one list of suffixes
    "evaluation": CORE | {"files", "labels"},
    "sources": CORE | {"files", "image", "labels"},
    "models": CORE | {"evaluation", "labels"},
    "contracts": CORE | {"files", "image", "labels", "models"},
    # evaluation: sightx-evaluate's metrics and report (inference.evaluate only; it sits below models already)
    "inference": CORE | {"contracts", "evaluation", "files", "image", "labels", "models", "parallel", "sources"},
    # evaluation: the QWK of the float and int8 models on a shard set's val split (--shards)
    "export": CORE | {"contracts", "evaluation", "files", "image", "inference", "labels", "models", "sources", "synth"},
    "shard": CORE | {"contracts", "image", "labels", "parallel", "sources"},
    "train": CORE | {"contracts", "evaluation", "files", "image", "inference", "labels", "models", "parallel"},
    "serve": CORE | {"__version__", "image", "inference", "labels", "models"},  # image.codec: header sizes, before decoding
    "explore": CORE | {"contracts", "evaluation", "files", "image", "labels", "parallel", "sources"},
    "synth": CORE | {"files", "parallel"},
    "doctor": CORE | {"image", "sources", "synth", "train"},
    "bench": CORE
    | {
        "contracts",
        "evaluation",
        "explore",
        "export",
        "files",
        "image",
        "inference",
        "labels",
        "models",
        "parallel",
        "shard",
        "sources",
        "synth",
        "train",
    },
}
# Cross-cutting modules at the package root (not domains): errors.py, at the bottom, and api.py, at the top:
# the notebook-facing facade over the applications (docs/architecture.md). Nothing inside sightx imports
# api; it imports each application lazily, inside the function that calls it.
API_USES = {"contracts", "explore", "image", "inference", "labels", "shard", "synth", "train"}
ALLOWED["api"] = CORE | API_USES
ROOT_MODULES = ["__init__.py", "api.py", "errors.py"]
# Third-party modules a domain must never import: image maths has no processes, files or networks.
FORBIDDEN_LIBS = {
    "image": {"multiprocessing", "subprocess", "concurrent", "threading", "socket", "torch", "pandas"},
    "labels": {"multiprocessing", "subprocess", "concurrent", "threading", "torch"},
    "evaluation": {"multiprocessing", "subprocess", "torch"},
}


def _imports(path: Path) -> set[str]:
    """Every module path `path` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _domain_modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        out.append((parts[0] if len(parts) > 1 else parts[0], path))
    return out


def test_each_domain_imports_only_what_it_may() -> None:
    broken = []
    for domain, path in _domain_modules():
        if path.name == "__main__.py":
            continue  # `python -m sightx.serve` runs the CLI: an entry point, not a dependency
        for name in _imports(path):
            top, _, rest = name.partition(".")
            used = rest.split(".")[0]
            if top == "sightx" and rest and used != domain and domain in ALLOWED and used not in ALLOWED[domain]:
                broken.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
            if top in FORBIDDEN_LIBS.get(domain, set()):
                broken.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert broken == []


def test_every_domain_has_its_rules() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders - {"cli"} == set(ALLOWED) - {"errors", "api"}


def test_the_root_holds_only_cross_cutting_modules() -> None:
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ROOT_MODULES


def test_nothing_inside_the_package_imports_the_api() -> None:
    """api.py is the top of the stack: a domain or the CLI importing it would be a cycle in the making."""
    users = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "api.py" and any(n.startswith("sightx.api") for n in _imports(p))
    ]
    assert users == []


def test_every_folder_says_what_lives_there() -> None:
    for init in sorted(PACKAGE.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init} has no docstring"


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def _loaded_after(statement: str, watch: tuple[str, ...]) -> list[str]:
    code = f"import sys\n{statement}\nprint(','.join(m for m in {watch!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    return [m for m in out.split(",") if m]


@pytest.mark.parametrize(
    ("statement", "never"),
    [
        # The data engine never imports torch: sharding runs where torch is not installed or is slow to import.
        ("import sightx.shard, sightx.sources, sightx.image.preprocess, sightx.labels.formats", ("torch",)),
        # Grading never imports the training loop.
        ("import sightx.inference.predict, sightx.serve.app", ("sightx.train.trainer", "sightx.train.loop", "sightx.train.stream")),
        # The doctor starts on the standard library alone, so it can say what is missing.
        ("import sightx.doctor.run", ("numpy", "pandas", "torch", "cv2", "PIL", "deflate")),
        # The notebook API imports each application when a function is called: `from sightx import api` is instant.
        ("import sightx.api", ("numpy", "pandas", "torch", "cv2", "PIL", "sightx.train", "sightx.shard")),
    ],
)
def test_light_entry_points_stay_light(statement: str, never: tuple[str, ...]) -> None:
    assert _loaded_after(statement, never) == []
