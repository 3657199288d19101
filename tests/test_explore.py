"""sightx-explore on sightx-synth and sightx-shard output: numbers against the inputs, PNGs, bad inputs."""

from __future__ import annotations

import base64
import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sightx import manifest as mf
from sightx.cli import explore as explore_cli
from sightx.explore import CHART_DPI, CHART_INCHES, TILE, WORST_COLS, ExploreOptions, explore, sample_images
from sightx.preprocess import PreprocessOptions
from sightx.shard import ShardOptions, run
from sightx.sheet import CAPTION_HEIGHT, contact_sheet, sheet_size
from sightx.synth.generate import SynthOptions, generate

OPTS = ExploreOptions(per_grade=2, seed=0, sample=0, workers=1, progress=False)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    generate(root, SynthOptions(n=12, seed=1, sizes=((640, 427),), corrupt=2, workers=1, progress=False))
    return root


@pytest.fixture(scope="module")
def raw_report(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report-raw")
    return out, explore(raw, out, OPTS)


@pytest.fixture(scope="module")
def shards(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    run(raw / "train", out, ShardOptions(preprocess=PreprocessOptions(size=128), shard_size=5, workers=1, progress=False))
    return out


@pytest.fixture(scope="module")
def shard_report(raw: Path, shards: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report-shards")
    return out, explore(shards, out, ExploreOptions(raw=str(raw), progress=False))


def _label_rows(path: Path) -> dict[str, int]:
    with open(path, newline="") as f:
        return {r["image"]: int(r["level"]) for r in csv.DictReader(f)}


def _truth(raw: Path) -> list[dict[str, str]]:
    with open(raw / "synthTruth.csv", newline="") as f:
        return list(csv.DictReader(f))


def _check_pngs(out: Path, summary: dict, expected: dict[str, tuple[int, int]]) -> None:
    """Every PNG listed is valid, of the intended size, and embedded in the self-contained report."""
    assert set(summary["figures"]) == set(expected)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(expected)
    page = (out / "report.html").read_text()
    for name, size in expected.items():
        with Image.open(out / name) as im:
            im.verify()
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.mode in ("RGB", "RGBA")
            assert im.size == size == tuple(summary["figures"][name])
        assert base64.b64encode((out / name).read_bytes()).decode() in page
    assert 'src="http' not in page and 'src="data:image/png;base64,' in page


def _chart(name: str) -> tuple[int, int]:
    w, h = CHART_INCHES[name]
    return round(w * CHART_DPI), round(h * CHART_DPI)


# --- raw archives ------------------------------------------------------------------


def test_class_numbers_match_the_label_file(raw: Path, raw_report: tuple[Path, dict]) -> None:
    out, summary = raw_report
    assert json.loads((out / "summary.json").read_text()) == summary
    labels = _label_rows(raw / "trainLabels.csv")
    counts = Counter(labels.values())
    classes = summary["classes"]
    assert classes["total"] == len(labels) == summary["labels"]["rows"] == 14
    assert classes["counts"] == [counts[g] for g in range(5)]
    assert classes["present"] == classes["counts"]  # every labelled image exists
    assert classes["percent"] == [round(100 * counts[g] / len(labels), 2) for g in range(5)]
    for eye in ("left", "right"):
        assert classes["by_eye"][eye] == [sum(1 for n, lv in labels.items() if n.endswith(eye) and lv == g) for g in range(5)]
    pairs: dict[str, dict[str, int]] = {}
    for name, level in labels.items():
        patient, eye = name.split("_")
        pairs.setdefault(patient, {})[eye] = level
    both = [p for p in pairs.values() if len(p) == 2]
    assert classes["patients"] == len(pairs)
    assert classes["patients_with_both_eyes"] == len(both)
    assert classes["discordant_patients"] == sum(p["left"] != p["right"] for p in both)
    majority = counts.most_common(1)[0][0]
    assert classes["baseline"]["grade"] == majority == 0
    assert classes["baseline"]["accuracy"] == pytest.approx(counts[0] / len(labels), abs=1e-4)
    assert classes["baseline"]["kappa"] == 0.0
    assert f"{counts[0] / len(labels):.1%}" in classes["baseline"]["text"]
    assert summary["labels"]["images_without_label"]["count"] == summary["labels"]["labels_without_image"]["count"] == 0


def test_gallery_shows_only_readable_photos_of_the_right_grade(raw: Path, raw_report: tuple[Path, dict]) -> None:
    _, summary = raw_report
    labels = _label_rows(raw / "trainLabels.csv")
    corrupt = {Path(r["path"]).name for r in _truth(raw) if r.get("corrupt")}
    shown = summary["gallery"]["images"]
    per_grade = Counter(labels[Path(n).stem] for n in shown)
    readable = Counter(lv for n, lv in labels.items() if f"{n}.jpeg" not in corrupt)
    assert per_grade == {g: min(2, readable[g]) for g in readable}
    assert not set(shown) & corrupt


def test_properties_match_the_files(raw: Path, raw_report: tuple[Path, dict]) -> None:
    _, summary = raw_report
    props = summary["properties"]
    files = sorted((raw / "train").glob("*.jpeg"))
    sizes = [p.stat().st_size for p in files]
    assert props["sampled"] == props["of"] == len(files) == 14
    assert props["file_bytes"]["min"] == min(sizes) == 0 and props["file_bytes"]["max"] == max(sizes)
    assert props["resolutions"]["640x427"] == 12  # the truncated file's header still reads; the empty one's does not
    assert props["measured"] == 12
    b = props["brightness"]
    assert b["min"] <= b["median"] <= b["max"] and props["too_dark"] + props["over_exposed"] <= 12
    assert (props["too_dark"] > 0) == (b["min"] < 30) and (props["over_exposed"] > 0) == (b["max"] > 200)
    # Field cut off by the frame: compare with the synthetic camera's true circles.
    margin = 3.0
    clear_cut = borderline = 0
    for r in _truth(raw):
        if r.get("corrupt"):
            continue
        w, h, cx, cy, rad = (float(r[k]) for k in ("width", "height", "cx", "cy", "radius"))
        overhang = max(rad - cx, rad - cy, cx + rad - w, cy + rad - h)
        clear_cut += overhang > margin
        borderline += abs(overhang) <= margin
    assert clear_cut <= props["fov_cut_off"] <= clear_cut + borderline
    assert props["fov_cut_off_rate"] == pytest.approx(props["fov_cut_off"] / props["measured"], abs=1e-4)
    assert len(props["worst"]) == 8 and {w["image"] for w in props["worst"]} <= {p.name for p in files}


def test_unreadable_images_are_findings_not_errors(raw: Path, raw_report: tuple[Path, dict]) -> None:
    out, summary = raw_report
    corrupt = {Path(r["path"]).name: r["corrupt"] for r in _truth(raw) if r.get("corrupt")}
    props = summary["properties"]
    assert props["unreadable"] == len(corrupt) == 2
    reasons = {"zero-byte": "empty-file", "truncated": "truncated"}  # synth's kind -> the codec's reason
    assert {f["image"]: f["reason"] for f in props["failed"]} == {n: reasons[k] for n, k in corrupt.items()}
    assert props["failed_by_reason"] == {"empty-file": 1, "truncated": 1}
    page = (out / "report.html").read_text()
    assert all(name in page for name in corrupt)


def test_raw_pngs(raw_report: tuple[Path, dict]) -> None:
    out, summary = raw_report
    _check_pngs(
        out,
        summary,
        {
            "classes.png": _chart("classes.png"),
            "properties.png": _chart("properties.png"),
            "gallery.png": (2 * TILE[0], 5 * (TILE[1] + CAPTION_HEIGHT)),
            "worst.png": (WORST_COLS * TILE[0], 2 * (TILE[1] + CAPTION_HEIGHT)),
        },
    )


def test_missing_and_mismatched_labels(raw: Path, tmp_path: Path) -> None:
    root = tmp_path / "raw"
    shutil.copytree(raw / "train", root / "train")
    summary = explore(root, tmp_path / "no-labels", OPTS)
    assert summary["labels"]["file"] is None and "trainLabels.csv" in summary["labels"]["error"]
    assert summary["classes"] is None and summary["gallery"]["shown"] == 0
    assert summary["properties"]["sampled"] == 14
    assert "no trainLabels.csv" in (tmp_path / "no-labels" / "report.html").read_text()
    assert set(summary["figures"]) == {"properties.png", "worst.png"}

    labels = _label_rows(raw / "trainLabels.csv")
    dropped = sorted(labels)[:2]
    kept = {n: g for n, g in labels.items() if n not in dropped} | {"999_left": 3}
    (root / "trainLabels.csv").write_text("image,level\n" + "".join(f"{n},{g}\n" for n, g in kept.items()))
    summary = explore(root, tmp_path / "mismatch", OPTS)
    assert summary["labels"]["images_without_label"] == {"count": 2, "examples": [f"{n}.jpeg" for n in dropped]}
    assert summary["labels"]["labels_without_image"] == {"count": 1, "examples": ["999_left"]}
    counts = Counter(kept.values())
    assert summary["classes"]["counts"] == [counts[g] for g in range(5)]
    assert summary["classes"]["present"][3] == counts[3] - 1
    assert "999_left" in (tmp_path / "mismatch" / "report.html").read_text()


def test_sample_is_seeded_and_in_folder_order() -> None:
    images = [Path(f"{i:03d}.jpeg") for i in range(50)]
    a = sample_images(images, 7, seed=3)
    assert len(a) == 7 and a == sorted(a) and a == sample_images(images, 7, seed=3)
    assert a != sample_images(images, 7, seed=4)
    assert sample_images(images, 0, seed=3) == images == sample_images(images, 99, seed=3)


def test_cli_broken_label_file_with_workers(raw: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("image,level\n11_left,7\n")
    out = tmp_path / "report"
    result = CliRunner().invoke(
        explore_cli, [str(raw), "--out", str(out), "--labels", str(bad), "--sample", "4", "--workers", "2", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert "grade not in 0-4" in summary["labels"]["error"] and summary["classes"] is None
    assert summary["properties"]["sampled"] == 4 and summary["properties"]["of"] == 14
    assert "report.html" in result.output


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(explore_cli, [str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert missing.exit_code == 1 and "does not exist" in missing.output and "Traceback" not in missing.output
    (tmp_path / "bogus").mkdir()
    (tmp_path / "bogus" / mf.MANIFEST).write_text("{}")
    bogus = runner.invoke(explore_cli, [str(tmp_path / "bogus"), "--out", str(tmp_path / "r")])
    assert bogus.exit_code == 1 and "not a SightX shard manifest" in bogus.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(explore_cli, [str(tmp_path / "empty"), "--out", str(tmp_path / "r")])
    assert empty.exit_code == 1 and "nothing to explore" in empty.output


# --- shard folders -----------------------------------------------------------------


def test_shard_numbers_match_the_manifest(shards: Path, shard_report: tuple[Path, dict]) -> None:
    _, summary = shard_report
    manifest = mf.read(shards)
    assert summary["kind"] == "shards" and summary["complete"]
    for name, info in manifest["splits"].items():
        got = summary["splits"][name]
        assert (got["count"], got["grades"], got["shards"]) == (info["count"], info["grades"], info["shards"])
        assert got["class_weights"] == info["class_weights"]
        total = sum(info["grades"])
        assert got["percent"] == [round(100 * c / total, 2) if total else 0.0 for c in info["grades"]]
    done = [s for s in manifest["shards"] if s["done"]]
    assert [(s["name"], s["grades"]) for s in summary["shards"]] == [(s["name"], s["grades"]) for s in done]
    with open(shards / mf.REJECTS, newline="") as f:
        rejects = list(csv.DictReader(f))
    by_reason = dict(Counter(r["reason"] for r in rejects))
    assert summary["rejects"]["by_reason"] == manifest["summary"]["rejected_by_reason"] == by_reason
    assert summary["rejects"]["examples"] == rejects


def test_before_after_gallery(raw: Path, shards: Path, shard_report: tuple[Path, dict]) -> None:
    out, summary = shard_report
    grades = [g for g in range(5) if summary["splits"]["train"]["grades"][g] + summary["splits"]["val"]["grades"][g]]
    assert summary["before_after"]["raw"] == str(raw / "train")  # the Kaggle root resolves to its train/
    assert summary["before_after"]["shown"] == 2 * len(grades)
    _check_pngs(
        out,
        summary,
        {
            "splits.png": _chart("splits.png"),
            "shard_balance.png": _chart("shard_balance.png"),
            "before_after.png": (4 * TILE[0], len(grades) * (TILE[1] + CAPTION_HEIGHT)),
        },
    )


def test_before_after_skipped_without_raw(raw: Path, shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    explore(shards, out, ExploreOptions(raw=str(raw), progress=False))
    assert (out / "before_after.png").is_file()
    summary = explore(shards, out, ExploreOptions(progress=False))  # same folder: the stale sheet must go
    assert summary["before_after"]["shown"] == 0 and "--raw" in summary["before_after"]["note"]
    assert not (out / "before_after.png").exists()
    assert "--raw PATH" in (out / "report.html").read_text()
    (tmp_path / "elsewhere").mkdir()
    summary = explore(shards, tmp_path / "r2", ExploreOptions(raw=str(tmp_path / "elsewhere"), progress=False))
    assert "none of the sampled source files" in summary["before_after"]["note"]


# --- contact sheets ----------------------------------------------------------------


def test_contact_sheet_layout() -> None:
    red = np.zeros((50, 100, 3), np.uint8)
    red[..., 0] = 255
    tile = (120, 80)
    sheet = contact_sheet([red, None, red], ["a caption", "missing", "x" * 200], cols=2, tile=tile)
    assert sheet.shape == (2 * (80 + CAPTION_HEIGHT), 240, 3) and sheet.dtype == np.uint8
    assert (sheet.shape[1], sheet.shape[0]) == sheet_size(3, 2, tile=tile)
    assert tuple(sheet[40, 60]) == (255, 0, 0)  # fitted and centred in its cell
    assert tuple(sheet[3, 60]) == (255, 255, 255)  # letterbox margin above the 2:1 image
    assert tuple(sheet[40, 180]) == (235, 235, 235)  # None: a grey cell
    for row, col in ((0, 0), (0, 1), (1, 0)):
        strip = sheet[row * 100 + 80 : row * 100 + 100, col * 120 : (col + 1) * 120]
        assert strip.min() < 128  # caption ink
    assert sheet[180:200, 120:].min() == 255  # no caption for the unused cell


def test_contact_sheet_rejects_bad_input() -> None:
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="captions"):
        contact_sheet([img], [], cols=1)
    with pytest.raises(ValueError, match="do not fit"):
        contact_sheet([img] * 3, ["a"] * 3, cols=1, rows=2)
    with pytest.raises(ValueError, match="RGB uint8"):
        contact_sheet([np.zeros((10, 10), np.uint8)], ["a"], cols=1)
