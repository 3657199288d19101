"""The documentation site builds with --strict (broken links, bad anchors and pages missing from the nav
fail), its generated reference covers every command, reject reason and warning code, README stays short, and
the tutorial's screenshots are taken by the script `make docs` runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

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


def test_the_tutorial_shows_every_picture_make_docs_takes(shots: ModuleType) -> None:
    page = (ROOT / "docs" / "tutorial" / "index.md").read_text()
    assert [name for name in shots.PICTURES if f"]({name})" not in page] == []
    for name in shots.PICTURES:
        path = ROOT / "docs" / "tutorial" / name
        assert path.stat().st_size < 250_000, name  # committed: 256 colours at a docs-column width
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width <= shots.WIDTH, name


def test_the_tutorial_screenshots_of_a_real_report_and_server(
    shots: ModuleType, tiny_raw: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """What `make docs` does after the tutorial's commands, on the tests' small set and untrained checkpoint."""
    if not shots.have_chromium():
        pytest.skip("no chromium + chromedriver (apt-get install chromium chromium-driver)")
    from sightx import api

    report = api.explore(tiny_raw, tmp_path / "report", sample=0).report
    photo = sorted((tiny_raw / "train").glob("*.jpeg"))[0]
    out = tmp_path / "pictures"
    out.mkdir()
    shots.screenshots(out, {"explore-raw.png": (report, None, "Grade gallery", shots.WIDTH)}, tiny_checkpoint, photo, tmp_path)
    with Image.open(out / "explore-raw.png") as raw, Image.open(out / "serve.png") as page:
        assert raw.size[0] == page.size[0] == shots.WIDTH
        assert 300 < raw.size[1] < 2000 and 600 < page.size[1] < 2000  # a section, and the page with its one graded card
        assert raw.mode == page.mode == "P"  # quantised, as committed
    with pytest.raises(LookupError, match="no sections"):
        with shots.chromium(tmp_path / "profile2") as driver:
            shots.report_shot(driver, report, "No such section", None)
