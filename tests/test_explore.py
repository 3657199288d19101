"""sightx-explore on sightx-synth and sightx-shard output: numbers against the inputs, PNGs, bad inputs."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from eyeq import eyeq_csv
from PIL import Image

from sightx.cli import explore as explore_cli
from sightx.contracts import manifest as mf
from sightx.contracts.rejects import FILE as REJECTS
from sightx.contracts.sample import read_samples
from sightx.errors import Rejection, SightXError
from sightx.explore import CHART_DPI, CHART_INCHES, TILE, WORST_COLS, ExploreError, ExploreOptions, explore, format_summary, sample_images
from sightx.explore.raw import FACTS_OPTIONS
from sightx.explore.sheet import CAPTION_HEIGHT, contact_sheet, sheet_size
from sightx.image.gradability import DEFAULT_THRESHOLD
from sightx.image.photos import preprocess_input
from sightx.image.preprocess import PreprocessOptions
from sightx.shard import ShardOptions, run
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
def ungradable_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 photos of every grade, about half of them the generator's ungradable shots, with EyeQ quality labels."""
    root = tmp_path_factory.mktemp("ungradable_raw")
    generate(root, SynthOptions(n=12, seed=11, sizes=((640, 427),), balanced=True, ungradable_rate=0.5, workers=1, progress=False))
    eyeq_csv(root)
    return root


@pytest.fixture(scope="module")
def quality_shards(ungradable_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ungradable_raw sharded with its EyeQ labels: a shard set of quality classes (manifest labels: quality)."""
    out = tmp_path_factory.mktemp("quality_shards")
    labels = str(ungradable_raw / "Label_EyeQ_train.csv")
    opts = ShardOptions(PreprocessOptions(size=64, quality=90), shard_size=4, val_fraction=0.25, seed=1, labels=labels, progress=False)
    run(ungradable_raw / "train", out, opts)
    return out


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
            "gradability.png": _chart("gradability.png"),
            "least_gradable.png": sheet_size(len(summary["gradability"]["least"]), WORST_COLS),
        },
    )


def test_raw_gradability_section_matches_the_photos(ungradable_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    summary = explore(ungradable_raw, out, OPTS)
    g = summary["gradability"]
    labels = _label_rows(ungradable_raw / "trainLabels.csv")
    # The score each photo gets on the preprocessing path, computed here photo by photo; a photo it
    # rejects (a field too dark to find) has none, and sightx-shard would not keep it either.
    scores, rejected = {}, []
    for p in sorted((ungradable_raw / "train").glob("*.jpeg")):
        try:
            scores[p.name] = preprocess_input(p.read_bytes(), p.name, FACTS_OPTIONS).info["gradability"]["score"]
        except Rejection:
            rejected.append(p.name)
    assert g["threshold"] == DEFAULT_THRESHOLD and g["measured"] == len(scores) == sum(g["histogram"]["counts"])
    assert g["rejected"] == len(rejected) == 12 - len(scores) == summary["properties"]["sampled"] - summary["properties"]["measured"]
    assert g["below"] == sum(s < DEFAULT_THRESHOLD for s in scores.values()) > 0
    for row in g["by_grade"]:
        mine = [s for name, s in scores.items() if labels[Path(name).stem] == row["grade"]]
        assert (row["measured"], row["below"]) == (len(mine), sum(s < DEFAULT_THRESHOLD for s in mine))
    assert [x["score"] for x in g["least"]] == sorted(scores.values())  # all fit on the sheet
    assert all(x["grade"] == labels[Path(x["image"]).stem] for x in g["least"])
    # The section flags every one of the generator's ungradable shots, and at most one sound photo: the
    # threshold is set for 10% false warnings on real gradable photos, and synthetic ones are not spared.
    ungradable = {Path(r["path"]).name for r in _truth(ungradable_raw) if r["ungradable"]}
    flagged = {n for n, s in scores.items() if s < DEFAULT_THRESHOLD}
    assert ungradable - set(rejected) and ungradable - set(rejected) <= flagged and len(flagged - ungradable) <= 1, flagged
    assert set(summary["figures"]) >= {"gradability.png", "least_gradable.png"}
    assert summary["figures"]["least_gradable.png"] == list(sheet_size(len(scores), WORST_COLS))
    page = (out / "report.html").read_text()
    assert "<h2>Gradability</h2>" in page and f"{len(scores)} photos measured" in page
    assert f"gradability: {g['below']} of {len(scores)} measured photo(s) below {DEFAULT_THRESHOLD}" in format_summary(summary, out)
    # Without a label file: the score over every photo, no per-grade shares.
    nolabels = tmp_path / "nolabels"
    shutil.copytree(ungradable_raw / "train", nolabels / "train")
    bare = explore(nolabels, tmp_path / "r2", OPTS)["gradability"]
    assert (bare["measured"], bare["below"], bare["histogram"]) == (g["measured"], g["below"], g["histogram"])
    assert all(r["measured"] == 0 for r in bare["by_grade"]) and all(x["grade"] is None for x in bare["least"])


def test_missing_and_mismatched_labels(raw: Path, tmp_path: Path) -> None:
    root = tmp_path / "raw"
    shutil.copytree(raw / "train", root / "train")
    summary = explore(root, tmp_path / "no-labels", OPTS)
    assert summary["labels"]["file"] is None and "trainLabels.csv" in summary["labels"]["error"]
    assert summary["classes"] is None and summary["gallery"]["shown"] == 0
    assert summary["properties"]["sampled"] == 14
    assert "no trainLabels.csv" in (tmp_path / "no-labels" / "report.html").read_text()
    assert set(summary["figures"]) == {"properties.png", "worst.png", "gradability.png", "least_gradable.png"}

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
    with open(shards / REJECTS, newline="") as f:
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
            "gradability.png": _chart("gradability.png"),
            "least_gradable.png": sheet_size(len(summary["gradability"]["least"]), WORST_COLS),
        },
    )


def test_gradability_section_matches_the_samples(shards: Path, shard_report: tuple[Path, dict], tmp_path: Path) -> None:
    out, summary = shard_report
    g = summary["gradability"]
    stored = sorted(
        (meta["gradability"]["score"], meta["grade"])
        for tar in shards.glob("*.tar")
        for _, parts in read_samples(tar)
        for meta in [json.loads(parts["json"])]
    )
    assert g["measured"] == len(stored) and g["unscored"] == 0 and sum(g["histogram"]["counts"]) == len(stored)
    for row in g["by_grade"]:
        mine = [s for s, grade in stored if grade == row["grade"]]
        assert (row["measured"], row["below"]) == (len(mine), sum(s < g["threshold"] for s in mine))
    assert [x["score"] for x in g["least"]] == [s for s, _ in stored[: len(g["least"])]]
    assert "Gradability" in (out / "report.html").read_text()
    # Shards written before the score: the section says so instead.
    old = tmp_path / "old"
    shutil.copytree(shards, old)
    for tar in old.glob("*.tar"):
        tar.write_bytes(tar.read_bytes().replace(b'"gradability":', b'"gradabilitx":'))
    g_old = explore(old, tmp_path / "r", ExploreOptions(progress=False))["gradability"]
    assert g_old["measured"] == 0 and g_old["unscored"] == len(stored) and "re-shard" in g_old["note"]
    assert not (tmp_path / "r" / "least_gradable.png").exists()


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


def test_raw_photos_with_eyeq_labels_are_counted_by_quality_class(ungradable_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    eyeq = ungradable_raw / "Label_EyeQ_train.csv"
    summary = explore(ungradable_raw, out, ExploreOptions(per_grade=1, sample=0, labels=str(eyeq), progress=False))
    quality = {r["image"].removesuffix(".jpeg"): int(r["quality"]) for r in csv.DictReader(eyeq.open())}
    counts = Counter(quality.values())
    assert summary["labels"]["kind"] == "quality"
    assert summary["classes"]["counts"] == [counts[q] for q in range(3)] and len(summary["classes"]["by_eye"]["left"]) == 3
    assert summary["classes"]["baseline"]["text"].startswith("Always predicting Good") and counts.most_common(1)[0][0] == 0
    g = summary["gradability"]
    assert len(g["by_grade"]) == 3 and sum(r["measured"] for r in g["by_grade"]) == g["measured"]
    assert all(x["grade"] == quality[Path(x["image"]).stem] for x in g["least"])
    assert g["by_grade"][2]["below_percent"] > g["by_grade"][0]["below_percent"]  # the Reject shots score low
    assert summary["figures"]["gallery.png"] == [TILE[0], 3 * (TILE[1] + CAPTION_HEIGHT)]  # one row per class
    page = (out / "report.html").read_text()
    assert "Quality class gallery" in page and all(f"<td>{n}</td>" in page for n in ("Good", "Usable", "Reject"))
    shown = f"quality classes Good:{counts[0]} Usable:{counts[1]} Reject:{counts[2]}; always-Good baseline"
    assert shown in format_summary(summary, out)
    errors: list[str] = []
    _check_object(summary, "", _schema()["raw"], set(), errors)
    assert not errors


def test_quality_shards_are_reported_by_quality_class(ungradable_raw: Path, quality_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    summary = explore(quality_shards, out, ExploreOptions(raw=str(ungradable_raw), progress=False))
    manifest = mf.read(quality_shards)
    assert (summary["labels"], summary["class_names"]) == ("quality", ["Good", "Usable", "Reject"])
    for name, info in manifest["splits"].items():
        assert summary["splits"][name]["grades"] == info["grades"] and len(info["grades"]) == 3
    stored = [
        (meta["quality"], meta["gradability"]["score"])
        for tar in quality_shards.glob("*.tar")
        for _, parts in read_samples(tar)
        for meta in [json.loads(parts["json"])]
    ]
    g = summary["gradability"]
    assert g["measured"] == len(stored) == manifest["summary"]["written"] and len(g["by_grade"]) == 3
    for row in g["by_grade"]:
        mine = [s for q, s in stored if q == row["grade"]]
        assert (row["measured"], row["below"]) == (len(mine), sum(s < g["threshold"] for s in mine))
    assert g["by_grade"][2]["measured"] > 0 and g["by_grade"][2]["below_percent"] > g["by_grade"][0]["below_percent"]
    assert sorted((x["score"], x["grade"]) for x in g["least"]) == sorted((s, q) for q, s in stored)
    present = [q for q in range(3) if any(c == q for c, _ in stored)]
    assert present == [0, 1, 2]  # the fixture's seed gives every class
    assert summary["before_after"]["shown"] == 2 * len(present) and summary["before_after"]["skipped"]["count"] == 0
    assert summary["figures"]["before_after.png"] == [4 * TILE[0], len(present) * (TILE[1] + CAPTION_HEIGHT)]
    page = (out / "report.html").read_text()
    assert all(f"<th>{n}</th>" in page for n in ("Good", "Usable", "Reject", "quality class"))
    assert "<th>grade 0</th>" not in page
    assert "labelled with quality classes: Good, Usable, Reject" in format_summary(summary, out)
    schema, errors = _schema()["shards"], []
    _check_object(summary, "", schema, set(), errors)
    assert not errors
    # A quality sample whose class is out of range or disagrees with .cls is skipped, as a bad grade is.
    bad = tmp_path / "bad"
    shutil.copytree(quality_shards, bad)
    first = sorted(bad.glob("train-*.tar"))[0]
    samples = list(read_samples(first))
    key, parts = samples[0]
    meta = json.loads(parts["json"])
    edits = [("q_range", {**parts, "json": json.dumps({**meta, "quality": 3}).encode(), "cls": b"3"})]
    edits.append(("q_cls", {**parts, "cls": str((meta["quality"] + 1) % 3).encode()}))
    _tar(first, samples + edits)
    skipped = explore(bad, tmp_path / "r2", ExploreOptions(progress=False))["gradability"]["skipped"]
    assert skipped["by_reason"] == {"bad-cls": 1, "bad-grade": 1}


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


# --- import cost -------------------------------------------------------------------


def test_import_loads_no_plotting_or_training_code() -> None:
    """Exploring must not pay for matplotlib (until it draws), torch or the trainer."""
    # sightx.train.config is light (the CLI declares train's options from it); the trainer is not.
    heavy = ("matplotlib", "torch", "torchvision", "webdataset", "sightx.train.trainer", "sightx.train.loop", "sightx.train.stream")
    code = "import sys, sightx.explore, sightx.cli; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert "sightx.explore.render" in loaded
    assert not {m for m in loaded if m.split(".")[0] in heavy or m in heavy}


def test_explore_error_is_a_sightx_error() -> None:
    assert issubclass(ExploreError, SightXError)
    assert str(ExploreError("first line\nsecond")) == "first line"


# --- summary.json schema -----------------------------------------------------------

SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "summary-schema.md"
_DISTRIBUTION = {"min", "p05", "median", "mean", "p95", "max"}


def _schema() -> dict[str, dict[str, tuple[str, str]]]:
    """kind -> {key path: (type, present)} from the tables of docs/summary-schema.md."""
    kinds: dict[str, dict[str, tuple[str, str]]] = {}
    rows: dict[str, tuple[str, str]] = {}
    for line in SCHEMA.read_text().splitlines():
        heading = re.match(r'## .*"kind": "(\w+)"', line)
        if heading:
            rows = kinds.setdefault(heading.group(1), {})
        elif line.startswith("| `"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return kinds


def _typed(value: Any, typ: str) -> bool:
    for t in typ.split("|"):
        inner = re.fullmatch(r"list\[(\w+)\]", t)
        if inner and isinstance(value, list) and all(_typed(v, inner.group(1)) for v in value):
            return True
        if t == "distribution" and isinstance(value, dict) and set(value) == _DISTRIBUTION:
            if all(_typed(v, "number") for v in value.values()):
                return True
        simple = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "str": isinstance(value, str),
            "bool": isinstance(value, bool),
            "null": value is None,
            "object": isinstance(value, dict),
        }
        if simple.get(t):
            return True
    return False


def _check_object(obj: dict[str, Any], path: str, rows: dict[str, tuple[str, str]], seen: set[str], errors: list[str]) -> None:
    prefix = f"{path}." if path else ""
    children = {k[len(prefix) :] for k in rows if k.startswith(prefix) and "." not in k[len(prefix) :] and "[]" not in k[len(prefix) :]}
    if not children:
        return  # opaque
    if children == {"*"}:
        for value in obj.values():
            _check_value(value, f"{prefix}*", rows, seen, errors)
        return
    for key, value in obj.items():
        if key not in children:
            errors.append(f"{prefix}{key}: written but not documented")
        else:
            _check_value(value, prefix + key, rows, seen, errors)
    errors += [f"{prefix}{k}: documented as always present, missing" for k in children if rows[prefix + k][1] == "always" and k not in obj]


def _check_value(value: Any, path: str, rows: dict[str, tuple[str, str]], seen: set[str], errors: list[str]) -> None:
    seen.add(path)
    typ = rows[path][0]
    if not _typed(value, typ):
        errors.append(f"{path}: {str(value)[:60]} is not {typ}")
    elif isinstance(value, dict) and typ != "distribution":
        _check_object(value, path, rows, seen, errors)
    elif isinstance(value, list) and any(k.startswith(f"{path}[].") for k in rows):
        seen.add(f"{path}[]")
        for item in value:
            _check_object(item, f"{path}[]", rows, seen, errors)


@pytest.fixture(scope="module")
def summaries(
    raw: Path, shards: Path, raw_report: tuple[Path, dict], shard_report: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
) -> list[dict]:
    """Summaries covering every optional key: labels missing, discordant eyes, no --raw, no rejects.csv, skips."""
    tmp = tmp_path_factory.mktemp("schema")
    quick = ExploreOptions(sample=3, progress=False)
    found = [raw_report[1], shard_report[1]]
    shutil.copytree(raw / "train", tmp / "nolabels" / "train")
    found.append(explore(tmp / "nolabels", tmp / "r1", quick))
    labels = _label_rows(raw / "trainLabels.csv")
    labels["1_left"], labels["1_right"] = 0, 2  # one patient with eyes of different grades
    (tmp / "labels.csv").write_text("image,level\n" + "".join(f"{n},{g}\n" for n, g in labels.items()))
    found.append(explore(raw, tmp / "r2", ExploreOptions(sample=3, labels=str(tmp / "labels.csv"), progress=False)))
    shutil.copytree(shards, tmp / "norejects")
    (tmp / "norejects" / REJECTS).unlink()
    found.append(explore(tmp / "norejects", tmp / "r3", quick))
    found.append(explore(_hostile_shards(shards, tmp / "hostile"), tmp / "r4", ExploreOptions(raw=str(raw), per_grade=6, progress=False)))
    return found


def test_summary_matches_the_documented_schema(summaries: list[dict]) -> None:
    schema = _schema()
    assert set(schema) == {"raw", "shards"}
    seen: dict[str, set[str]] = {kind: set() for kind in schema}
    errors: list[str] = []
    for summary in summaries:
        _check_object(summary, "", schema[summary["kind"]], seen[summary["kind"]], errors)
    assert not errors
    for kind, rows in schema.items():
        assert set(rows) - seen[kind] == set(), f"documented {kind} keys no test summary has"
    assert summaries[3]["classes"]["discordant_examples"] == [{"patient": "1", "left": 0, "right": 2}]


# --- hostile shard folders ---------------------------------------------------------


def _tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for key, parts in samples:
            for ext, data in parts.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _huge_header(jpg: bytes) -> bytes:
    """The same JPEG with a frame header claiming 50000x50000 pixels."""
    sof = jpg.index(b"\xff\xc0")
    return jpg[: sof + 5] + (50000).to_bytes(2, "big") * 2 + jpg[sof + 9 :]


HOSTILE_SKIPS = {
    "bad-json": 2,
    "bad-cls": 2,
    "bad-grade": 1,
    "bad-source": 2,
    "not-jpeg": 1,
    "too-large": 1,
    "truncated": 1,
    "incomplete-sample": 1,
    "unreadable-shard": 2,
}


def _hostile_shards(shards: Path, dest: Path) -> Path:
    """A copy of `shards` whose train tars hold malformed samples, a truncated tar and a tar that is not one."""
    shutil.copytree(shards, dest)
    names = sorted(p.name for p in dest.glob("train-*.tar"))
    assert len(names) == 3
    good = list(read_samples(dest / names[0]))
    meta = json.loads(good[0][1]["json"])
    jpg = good[0][1]["jpg"]

    def sample(key: str, json_bytes: bytes | None = None, cls: bytes | None = None, jpg_bytes: bytes = jpg, **edit: Any) -> tuple:
        parts = {"jpg": jpg_bytes, "cls": cls if cls is not None else str(edit.get("grade", meta["grade"])).encode()}
        parts["json"] = json_bytes if json_bytes is not None else json.dumps({**meta, **edit}).encode()
        return key, parts

    bad = [
        sample("x_json", json_bytes=b"{not json"),
        sample("x_array", json_bytes=b"[1, 2]"),
        sample("x_cls", cls=b"abc"),
        sample("x_mismatch", cls=b"9"),
        sample("x_grade", grade=9),
        sample("x_abs", source="/etc/passwd"),
        sample("x_dotdot", source="../../outside.jpeg"),
        sample("x_notjpeg", jpg_bytes=b"hello"),
        sample("x_huge", jpg_bytes=_huge_header(jpg)),
        sample("x_trunc", jpg_bytes=jpg[: len(jpg) // 2], grade=2),  # decodes only when picked: grade 2 is always picked
        ("x_nojson", {"jpg": jpg, "cls": b"0"}),
    ]
    _tar(dest / names[0], good + bad)
    data = (dest / names[1]).read_bytes()
    (dest / names[1]).write_bytes(data[: len(data) // 2 + 100])  # cut inside a member
    (dest / names[2]).write_bytes(b"this is not a tar file" * 50)
    return dest


def test_hostile_shards_are_skipped_and_recorded(raw: Path, shards: Path, summaries: list[dict], tmp_path: Path) -> None:
    summary = summaries[-1]
    skipped = summary["before_after"]["skipped"]
    assert skipped["by_reason"] == HOSTILE_SKIPS and skipped["count"] == sum(HOSTILE_SKIPS.values())
    assert {e["reason"] for e in skipped["examples"]} == set(HOSTILE_SKIPS)
    assert all("\n" not in e["detail"] for e in skipped["examples"])
    shown = summary["before_after"]["shown"]
    assert shown >= 5 and summary["figures"]["before_after.png"][1] == 2 * (TILE[1] + CAPTION_HEIGHT)
    assert "malformed sample(s)" in format_summary(summary, tmp_path)
    # The same through the command: exit 0, the skip reported in one line, the report names the samples.
    out = tmp_path / "report"
    result = CliRunner().invoke(
        explore_cli, [str(_hostile_shards(shards, tmp_path / "h")), "--out", str(out), "--raw", str(raw), "--per-grade", "6", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and f"{skipped['count']} malformed sample(s) or shard(s) passed over" in result.output
    page = (out / "report.html").read_text()
    assert "x_json" in page and "unreadable-shard" in page and "/etc/passwd" in page


def test_a_shard_set_with_only_broken_shards(raw: Path, shards: Path, tmp_path: Path) -> None:
    dest = _hostile_shards(shards, tmp_path / "h")
    for name in ("train-000000.tar", "train-000001.tar"):
        (dest / name).write_bytes(b"")
    (dest / "val-000000.tar").unlink()  # listed as done, gone from the disk
    summary = explore(dest, tmp_path / "r", ExploreOptions(raw=str(raw), progress=False))
    assert summary["before_after"]["shown"] == 0 and "no usable labelled sample" in summary["before_after"]["note"]
    assert summary["before_after"]["skipped"]["by_reason"] == {"unreadable-shard": 4}
    assert not (tmp_path / "r" / "before_after.png").exists()


def _edit(m: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for p in parents:
        m = m[int(p)] if isinstance(m, list) else m[p]
    if value is _DELETE:
        del m[last]
    else:
        m[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("splits.train.count", _DELETE, "manifest field splits.train.count is missing"),
        # fields every manifest reader needs are checked by manifest.read itself
        ("splits.train.grades", _DELETE, "manifest field splits.train.grades is not 5 non-negative counts"),
        ("splits.val.grades", [1, 2], "manifest field splits.val.grades is not 5 non-negative counts"),
        ("splits.train.shards", "3", "splits.train.shards is '3', not a non-negative integer"),
        ("splits.train.class_weights", {"inverse": [1, 2]}, "splits.train.class_weights.inverse is [1, 2], not a list of 5 numbers"),
        ("splits.train", [], "manifest field splits.train.grades is not 5 non-negative counts"),
        ("shards.0.grades", _DELETE, "manifest field shards[0].grades is None"),
        ("shards.0.count", -1, "manifest field shards[0].count is -1"),
        ("summary", "oops", "manifest field summary is 'oops', not an object"),
        ("summary.rejected_by_reason", {"x": "y"}, "summary.rejected_by_reason is {'x': 'y'}"),
        ("options", [], "manifest field options is [], not an object"),
        ("splits", "oops", "manifest field 'splits' is not an object"),
    ],
)
def test_manifest_without_counts_is_one_line(shards: Path, tmp_path: Path, field: str, value: Any, message: str) -> None:
    dest = tmp_path / "s"
    shutil.copytree(shards, dest)
    m = json.loads((dest / mf.MANIFEST).read_text())
    _edit(m, field, value)
    (dest / mf.MANIFEST).write_text(json.dumps(m))
    result = CliRunner().invoke(explore_cli, [str(dest), "--out", str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # refused before the report folder is touched


def test_unreadable_rejects_csv_is_a_note(shards: Path, tmp_path: Path) -> None:
    dest = tmp_path / "s"
    shutil.copytree(shards, dest)
    (dest / REJECTS).write_bytes(b'source,reason\n\xff\xfe,\x00bad\n"unterminated')
    summary = explore(dest, tmp_path / "r", ExploreOptions(progress=False))
    assert summary["rejects"]["count"] == 2  # the manifest's numbers stand; the CSV only gives examples
    assert [r["source"] for r in summary["rejects"]["examples"]] == ["\ufffd\ufffd", "unterminated"]
    assert json.loads((tmp_path / "r" / "summary.json").read_text()) == summary
    assert "unterminated" in (tmp_path / "r" / "report.html").read_text()
