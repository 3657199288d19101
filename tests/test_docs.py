"""The documentation site builds with --strict (broken links, bad anchors and pages missing from the nav
fail), its generated reference covers every command, reject reason and warning code, and README stays short."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_every_command_is_in_the_cli_reference(site: Path) -> None:
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    page = (site / "reference" / "cli" / "index.html").read_text()
    assert {name for name in scripts if f'id="{name}"' not in page} == set()


def test_every_reject_reason_and_warning_code_is_in_the_reference(site: Path) -> None:
    from sightx.contracts.rejects import REASONS
    from sightx.inference.warnings import MESSAGES

    formats = (site / "reference" / "formats" / "index.html").read_text()
    warnings = (site / "reference" / "warnings" / "index.html").read_text()
    assert [r for r in REASONS if f"<code>{r}</code>" not in formats] == []
    assert [w for w in MESSAGES if f"<code>{w}</code>" not in warnings] == []


def test_every_api_name_is_in_the_api_reference(site: Path) -> None:
    import sightx.api as api

    page = (site / "reference" / "api" / "index.html").read_text()
    assert [n for n in api.__all__ if f'id="sightx.api.{n}"' not in page] == []


def test_the_site_loads_nothing_from_the_network(site: Path) -> None:
    external = re.compile(r"""<(?:link|script|img)[^>]+(?:href|src)=["']https?://""")
    pages = [p for p in site.rglob("*.html") if external.search(p.read_text())]
    assert pages == []


def test_readme_is_short_and_its_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 250
    links = re.findall(r"\]\(((?!https?://)[^)#]+)", text)
    assert [link for link in links if not (ROOT / link).exists()] == []
