"""Regenerate the documentation's pictures under docs/ from synthetic data (run: `make docs`).

- docs/synthetic_grades.png: synthetic fundus photos, one row per grade, at the real camera mix;
- docs/classes.png, docs/gallery.png, docs/shard_balance.png: sightx-explore charts on a synthetic
  EyePACS-like set and its shards;
- docs/tutorial/*.png: the tutorial run for real, its reports and server page in headless Chromium (tutorial_shots.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tutorial_shots import save_small, tutorial

from sightx.explore.sheet import contact_sheet
from sightx.synth.render import ImageSpec, render

PER_GRADE = 4
BIN = Path(sys.executable).parent


def grade_sheet(out: Path) -> None:
    """One row per grade; full-resolution renders shown as thumbnails, decoded at 1/8 scale."""
    images, captions = [], []
    for grade in range(5):
        for i in range(PER_GRADE):
            jpeg = render(ImageSpec((2024, grade, i), grade, bool(i % 2), None, 90, 0.0)).jpeg
            img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_REDUCED_COLOR_8)
            images.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            captions.append(f"grade {grade}")
    sheet = contact_sheet(images, captions, cols=PER_GRADE, tile=(240, 170))
    save_small(Image.fromarray(sheet), out / "synthetic_grades.png")


def run(command: str, *args: str) -> None:
    subprocess.run([str(BIN / command), *args], check=True)


def explore_charts(out: Path) -> None:
    """The class chart and grade gallery of a raw set, and the per-shard balance of its shards."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        run("sightx-synth", str(t / "raw"), "--n", "300", "--seed", "5", "--size", "1024x683", "--quiet")
        run("sightx-explore", str(t / "raw"), "--out", str(t / "rep_raw"), "--quiet")
        run("sightx-shard", str(t / "raw"), str(t / "shards"), "--size", "128", "--shard-size", "40", "--quiet")
        run("sightx-explore", str(t / "shards"), "--out", str(t / "rep_shards"), "--quiet")
        shutil.copy(t / "rep_raw" / "classes.png", out / "classes.png")
        save_small(Image.open(t / "rep_raw" / "gallery.png"), out / "gallery.png")
        shutil.copy(t / "rep_shards" / "shard_balance.png", out / "shard_balance.png")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
    target.mkdir(exist_ok=True)
    grade_sheet(target)
    explore_charts(target)
    tutorial(target / "tutorial")
    print(f"wrote pictures to {target}/")
