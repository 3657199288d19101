"""The tutorial's pictures, taken from a real run of its commands (run by `make docs` through
tools/make_docs_images.py), so that docs/tutorial/index.md never shows outputs the code no longer makes.

It runs the tutorial's steps on a small synthetic download (smaller than `make demo`'s, a few minutes on
2 cores, every seed fixed), starts `sightx-serve` on a free loopback port, and drives Debian's headless
Chromium (/usr/bin/chromium + chromedriver, as tests/test_serve.py does: no browser is ever downloaded):

- explore-raw.png: the top of the download's report (the class distribution, the always-grade-0 trap);
- explore-shards.png: the shards report's photos before and after preprocessing;
- learning-curve.png: sightx-train's learning curve;
- serve.png: the server page after grading one of the download's test photos, with its Grad-CAM.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from sightx.bench.serve import free_port
from sightx.files.atomic import atomic_write_bytes
from sightx.sources.detect import open_source

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TIMEOUT = 120.0
WIDTH = 1000  # CSS pixels, at device scale 1: readable in the docs' content column, small as a PNG
PICTURES = ("explore-raw.png", "explore-shards.png", "learning-curve.png", "serve.png")

# The tutorial's commands with the tutorial's paths (the reports show them), on a smaller download:
# 400 photos at one camera size instead of 600 at the EyePACS mix, 128 px instead of 160, 6 epochs instead of 8.
DEMO = "data/demo"
ZIP = f"{DEMO}/download/diabetic-retinopathy-detection.zip"
STEPS: tuple[tuple[str, ...], ...] = (
    ("sightx-synth", f"{DEMO}/download", "--archive", "kaggle", "--n", "400", "--seed", "1", "--corrupt", "4", "--with-test", "4")
    + ("--size", "1024x683", "--workers", "2", "--quiet"),
    ("sightx-explore", ZIP, "--out", f"{DEMO}/reports/raw", "--workers", "2", "--quiet"),
    ("sightx-shard", ZIP, f"{DEMO}/shards", "--size", "160", "--shard-size", "50", "--val-fraction", "0.2", "--workers", "2", "--quiet"),
    ("sightx-explore", f"{DEMO}/shards", "--out", f"{DEMO}/reports/shards", "--raw", ZIP, "--workers", "2", "--quiet"),
    ("sightx-train", f"{DEMO}/shards", "--out", f"{DEMO}/run", "--arch", "resnet18", "--image-size", "128", "--epochs", "6")
    + ("--batch-size", "32", "--lr", "1e-3", "--workers", "1", "--seed", "0", "--device", "cpu", "--quiet"),
)


def have_chromium() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


def save_small(img: Image.Image, path: Path) -> None:
    """256-colour PNG, written atomically: pictures in the repo at a third of the size, indistinguishable at this scale."""
    buf = io.BytesIO()
    img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buf, "PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def sightx_serve(checkpoint: Path, log: Path) -> Iterator[str]:
    """`sightx-serve` as the tutorial starts it, on a free loopback port; yields its URL once /readyz answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "sightx.serve", "--checkpoint", str(checkpoint), "--port", str(port), "--device", "cpu"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sightx-serve did not become ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as res:
            return bool(res.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """Headless Chromium through Selenium (no sandbox in containers, nothing fetched in the background), at a
    fixed width and device scale 1; the browser tests (tests/test_serve.py, tests/test_docs.py) use it too."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},900",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(TIMEOUT)
        yield driver
    finally:
        driver.quit()


def _viewport(driver: Any, width: int, height: int) -> None:
    """width x height CSS pixels at scale 1, set through DevTools (the window's size would include its frame)."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def _shot(driver: Any) -> Image.Image:
    return Image.open(io.BytesIO(driver.get_screenshot_as_png()))


def report_shot(driver: Any, report: Path, start: str | None, end: str | None, width: int = WIDTH) -> Image.Image:
    """An explore report from its section headed `start` (None: the top) down to the one headed `end` (None: the end),
    `width` CSS pixels wide (its charts and photos scale down with it, its text does not)."""
    driver.get(report.resolve().as_uri())
    _viewport(driver, width, 900)
    # The report's body has side margins only past its max-width (1250 px): give it some here.
    driver.execute_script("document.body.style.padding = '0 16px'")
    top, bottom = driver.execute_script(
        "const at = t => { if (t === null) return null;"
        "  const h = [...document.querySelectorAll('h2')].find(e => e.textContent.startsWith(t));"
        "  return h ? h.getBoundingClientRect().top + window.scrollY : -1; };"
        "return [at(arguments[0]) ?? 0, at(arguments[1]) ?? document.documentElement.scrollHeight];",
        start,
        end,
    )
    if top < 0 or bottom <= top:  # -1: a heading not found
        raise LookupError(f"{report} has no sections {start!r} to {end!r}")
    _viewport(driver, width, round(bottom - top))
    driver.execute_script("window.scrollTo(0, arguments[0])", top)
    return _shot(driver)


def serve_shot(driver: Any, url: str, photo: Path) -> Image.Image:
    """The server page after grading `photo` through its file input: the grade, the bars and the Grad-CAM, whole."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    _viewport(driver, WIDTH, 900)
    wait = WebDriverWait(driver, TIMEOUT)
    wait.until(lambda d: "loading" not in d.find_element(By.ID, "model").text)
    driver.find_element(By.ID, "files").send_keys(str(photo.resolve()))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card[data-state=done], .card[data-state=error]"))
    card = driver.find_element(By.CSS_SELECTOR, ".card")
    if card.get_attribute("data-state") != "done":
        raise RuntimeError(f"the page did not grade {photo.name}: {card.text}")
    # the field and the heat map laid over it: both decoded (a data: URI loads after the card says done)
    loaded = "return [...document.querySelectorAll('.card .field, .card .cam')].every(i => i.complete && i.naturalWidth > 0)"
    wait.until(lambda d: d.execute_script(loaded))
    _viewport(driver, WIDTH, int(driver.execute_script("return document.documentElement.scrollHeight")))
    return _shot(driver)


Section = tuple[Path, str | None, str | None, int]  # report.html, first and next section (report_shot), width


def screenshots(out: Path, reports: dict[str, Section], checkpoint: Path, photo: Path, work: Path) -> None:
    """Each report section as out/NAME (report_shot), and the server page grading `photo` as out/serve.png."""
    with chromium(work / "profile") as driver:
        for name, (report, start, end, width) in reports.items():
            save_small(report_shot(driver, report, start, end, width), out / name)
        with sightx_serve(checkpoint, work / "serve.log") as url:
            save_small(serve_shot(driver, url, photo), out / "serve.png")


def unlabelled_photo(download: Path, into: Path) -> Path:
    """The first unlabelled test photo inside the competition zip, as a file the page's file input can take."""
    source = open_source(download, unlabeled=True)
    name, data = next(iter(source.stream([source.members()[0].name])))
    if not isinstance(data, bytes):
        raise RuntimeError(f"{name} in {download}: {data}")
    path = into / Path(name).name
    path.write_bytes(data)
    return path


def tutorial(out: Path) -> None:
    """Run the tutorial's steps in a scratch folder and write its pictures to `out`."""
    if not have_chromium():
        raise SystemExit(f"no {CHROMIUM} + {CHROMEDRIVER}: apt-get install chromium chromium-driver")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for command, *args in STEPS:
            print(f"$ {command} {' '.join(args)}", flush=True)
            subprocess.run([str(BIN / command), *args], check=True, cwd=work)
        run = work / DEMO / "run"
        save_small(Image.open(run / "learning_curve.png"), out / "learning-curve.png")
        reports = {
            "explore-raw.png": (work / DEMO / "reports/raw/report.html", None, "Grade gallery", WIDTH),
            # photos: narrower, to keep the PNG small
            "explore-shards.png": (work / DEMO / "reports/shards/report.html", "Before and after preprocessing", None, 720),
        }
        screenshots(out, reports, run / "best.pt", unlabelled_photo(work / ZIP, work), work)


if __name__ == "__main__":
    tutorial(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/tutorial"))
    print("wrote " + ", ".join(PICTURES))
