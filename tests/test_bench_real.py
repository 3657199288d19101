"""sightx-bench real: the field finder and the gradability score measured on folders of photos, here
synthetic ones with a gradability.csv like the real sets'; on ../shared/real-dev when it is present."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sightx.bench.real import run_real, sets
from sightx.cli import bench as bench_cli
from sightx.image import codec
from sightx.synth.generate import SynthOptions, generate

REAL_DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "real-dev"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sets: 12 photos, half of them the generator's ungradable shots, with gradability.csv, and a
    set of two photos plus a blank frame (no field: a no-fov rejection)."""
    root = tmp_path_factory.mktemp("real")
    generate(root / "gen", SynthOptions(n=12, seed=4, sizes=((768, 512),), ungradable_rate=0.5, balanced=True, workers=1, progress=False))
    photos = root / "camera-a"
    (root / "gen" / "train").rename(photos)
    with open(root / "gen" / "synthTruth.csv", newline="") as f:
        truth = {Path(r["path"]).stem: r["ungradable"] for r in csv.DictReader(f)}
    with open(photos / "gradability.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "gradable", "eyeq_quality"])
        for image, kind in sorted(truth.items()):
            w.writerow([image, 0 if kind else 1, ""])
    other = root / "camera-b"
    other.mkdir()
    for p in sorted(photos.glob("*.jpeg"))[:2]:
        (other / p.name).write_bytes(p.read_bytes())
    (other / "blank.jpg").write_bytes(codec.encode(np.zeros((480, 640, 3), np.uint8), 90))
    return root


def test_each_subfolder_of_photos_is_a_set(labelled: Path) -> None:
    assert [p.name for p in sets([labelled])] == ["camera-a", "camera-b"]  # gen/ holds only its CSVs now
    assert sets([labelled / "camera-b"]) == [labelled / "camera-b"]
    with pytest.raises(FileNotFoundError):
        sets([labelled / "missing"])


def test_reports_fields_scores_and_the_operating_point(labelled: Path, tmp_path: Path) -> None:
    out = tmp_path / "real.json"
    sheet = tmp_path / "rejected.png"
    folders = [str(labelled / "camera-a"), str(labelled / "camera-b")]
    result = CliRunner().invoke(bench_cli, ["real", *folders, "--json", str(out), "--sheet", str(sheet)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    a, b = data["sets"]
    assert a["photos"] == 12 and b["photos"] == 3 and b["no_fov"] == 1 and b["rejected"] == {"no-fov": 1}
    g = a["gradability"]
    scored = 12 - sum(a["rejected"].values())
    assert g["labelled"] == scored and g["auc"] is not None and g["auc"] >= 0.9 and "fitted_here" not in g
    assert g["sensitivity"]["of"] == g["ungradable"] and g["specificity"]["of"] == scored - g["ungradable"]
    assert a["warned"]["of"] == scored and a["ms_per_photo"] > a["score_ms_per_photo"] > 0
    assert 0.3 < a["circle"]["radius_over_short_side_p5_p50_p95"][1] < 0.6
    assert data["sheet"] == str(sheet) and sheet.stat().st_size > 0  # the blank frame, captioned with why
    assert "camera-a" in result.output and "AUC gradable" in result.output


def test_what_is_named_like_a_photo_but_is_not_a_file_is_counted_never_opened(labelled: Path, tmp_path: Path) -> None:
    folder = tmp_path / "camera-c"
    folder.mkdir()
    for p in sorted((labelled / "camera-a").glob("*.jpeg"))[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "gone.jpeg").symlink_to(folder / "missing.jpeg")
    os.mkfifo(folder / "pipe.jpeg")  # opening it would wait for a writer forever
    (s,) = run_real([folder])["sets"]
    assert s["photos"] == 4 and s["rejected"] == {"not-a-file": 2} and s["warned"]["of"] == 2


def test_no_folder_and_no_real_dev_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(bench_cli, ["real"])
    assert result.exit_code == 2 and "name the folders of real photos" in result.output
    result = CliRunner().invoke(bench_cli, ["shard", str(tmp_path)])
    assert result.exit_code == 2 and "folders are for `sightx-bench real`" in result.output


@pytest.mark.skipif(not REAL_DEV.is_dir(), reason="../shared/real-dev not available")
def test_real_photos_all_keep_their_field_and_the_score_separates_them() -> None:
    """The real sets (never copied here): every photo keeps its field; the fitted set shows its
    cross-validated AUC beside the in-sample one; the other camera is scored without labels."""
    result = run_real([REAL_DEV])
    by_name = {Path(s["folder"]).name: s for s in result["sets"]}
    eyepacs, clinic = by_name["eyepacs-1024"], by_name["clinic-1000"]
    assert eyepacs["no_fov"] == 0 and clinic["no_fov"] == 0
    g = eyepacs["gradability"]
    assert g["fitted_here"]["cv_auc"] >= 0.8 and g["auc"] >= g["fitted_here"]["cv_auc"] - 0.02
    assert g["specificity"]["share"] >= 0.85 and g["eyeq_reject_auc"] >= 0.85
    assert clinic["warned"]["share"] < 0.5
