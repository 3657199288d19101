"""The one grading path: formats people send, the no-field fallback, quality warnings, the Kaggle submission."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from sample_photos import encode, huge_jpeg_header, huge_png_header, no_field_photo, rgb_of, variants

from sightx.errors import Rejection
from sightx.image.preprocess import PreprocessOptions, preprocess_bytes
from sightx.inference.grader import Grader, preprocess_photo
from sightx.inference.warnings import photo_warnings

OPTS = PreprocessOptions(size=64, quality=90)


@pytest.fixture(scope="module")
def photo(tiny_raw: Path) -> bytes:
    """A synthetic fundus JPEG whose field sightx-shard finds."""
    for p in sorted((tiny_raw / "train").glob("*.jpeg")):
        data = p.read_bytes()
        try:
            preprocess_bytes(data, OPTS)
            return data
        except Rejection:
            continue
    raise AssertionError("no usable synthetic photo")


def test_grading_imports_neither_the_trainer_nor_plotting() -> None:
    code = (
        "import sys, sightx.inference.grader, sightx.inference.predict; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'webdataset') "
        "or m.startswith(('sightx.train', 'sightx.evaluation.plots', 'sightx.train.stream', 'sightx.train.balance'))]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_a_plain_jpeg_is_preprocessed_exactly_as_a_shard(photo: bytes) -> None:
    assert preprocess_photo(photo, OPTS).jpeg == preprocess_bytes(photo, OPTS).jpeg


def test_other_formats_find_the_same_field(photo: bytes) -> None:
    want = preprocess_photo(photo, OPTS).measures
    for name, data in variants(photo).items():
        got = preprocess_photo(data, OPTS)
        assert not {"no-fov", "fov-too-small"} & set(got.warnings), name
        assert got.measures["orig_size"] == want["orig_size"], name
        for k in ("cx", "cy", "r"):
            assert got.measures["circle"][k] == pytest.approx(want["circle"][k], abs=0.02 * want["circle"]["r"]), (name, k)
        if name != "grey":
            assert got.measures["brightness"] == pytest.approx(want["brightness"], abs=4), name


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty-file"),
        (b"GIF89a not supported", "not-image"),
        (b"\xff\xd8\xff\xe0 truncated", "decode-error"),
    ],
)
def test_unreadable_inputs_are_rejections(data: bytes, reason: str) -> None:
    with pytest.raises(Rejection) as e:
        preprocess_photo(data, OPTS)
    assert e.value.reason == reason


def test_huge_headers_are_refused_undecoded(photo: bytes) -> None:
    for data in (huge_jpeg_header(photo), huge_png_header()):
        with pytest.raises(Rejection) as e:
            preprocess_photo(data, OPTS)
        assert e.value.reason == "too-large"


def test_a_photo_without_a_field_is_graded_on_the_centre_square_with_a_warning() -> None:
    got = preprocess_photo(no_field_photo(), OPTS)
    assert got.warnings[0] == "no-fov"
    assert got.measures["circle"] == {"cx": 319.5, "cy": 239.5, "r": 240.0}


def test_quality_warnings_for_dark_and_blurred_photos(photo: bytes) -> None:
    rgb = rgb_of(photo)
    assert photo_warnings(preprocess_photo(photo, OPTS).measures) == []
    dark = preprocess_photo(encode((rgb * 0.05).astype(np.uint8), "JPEG", quality=95), OPTS)
    assert dark.warnings == ("possibly-ungradable", "too-dark"), dark.measures["gradability"]
    blurred = preprocess_photo(encode(cv2.GaussianBlur(rgb, (0, 0), 0.015 * min(rgb.shape[:2])), "JPEG", quality=95), OPTS)
    assert blurred.warnings == ("possibly-ungradable", "blurred"), blurred.measures["gradability"]
    # A sample from shards written before the score: the fixed limits on single measures.
    assert photo_warnings({"fov_fraction": 0.6}) == ["field-cut-off"]
    assert photo_warnings({"brightness": 12.0}) == ["too-dark"]


def test_grader_grades_bytes(tiny_checkpoint: Path, photo: bytes) -> None:
    grader = Grader(tiny_checkpoint, "cpu")
    g = grader.grade_bytes(photo)
    assert 0 <= g.grade <= 4 and g.output.shape == (5,) and g.output.sum() == pytest.approx(1, abs=1e-5)
    assert g.referable == (g.grade >= 2) and g.referable_score == pytest.approx(float(g.output[2:].sum()), abs=1e-6)
    assert grader.majority_grade == 0 and len(grader.sha256) == 64


def test_predict_grades_every_readable_photo_and_writes_kaggle_submission(tiny_checkpoint: Path, photo: bytes, tmp_path: Path) -> None:
    from sightx.cli import predict as predict_cli

    photos = tmp_path / "test"
    photos.mkdir()
    (photos / "1_left.jpeg").write_bytes(photo)
    (photos / "1_right.jpeg").write_bytes(no_field_photo())
    (photos / "2_left.jpeg").write_bytes(b"broken")
    sample = tmp_path / "sampleSubmission.csv"
    sample.write_text("image,level\n1_left,0\n1_right,0\n2_left,0\n3_right,0\n")
    base = [str(photos), "--checkpoint", str(tiny_checkpoint), "--workers", "1", "--quiet", "--device", "cpu"]

    res = CliRunner().invoke(predict_cli, [*base, "--out", str(tmp_path / "pred.csv")])
    assert res.exit_code == 0, res.output
    rows = {r["image"]: r for r in csv.DictReader(open(tmp_path / "pred.csv"))}
    assert list(next(iter(rows.values()))) == ["image", "level", "p0", "p1", "p2", "p3", "p4", "gradability", "warnings", "error"]
    assert rows["1_right"]["level"] != "" and rows["1_right"]["warnings"].startswith("no-fov") and not rows["1_right"]["error"]
    assert float(rows["1_right"]["gradability"]) == 0 and "possibly-ungradable" in rows["1_right"]["warnings"]  # no field found
    assert 0 <= float(rows["1_left"]["gradability"]) <= 1
    assert rows["2_left"]["level"] == "" and rows["2_left"]["error"].startswith("not-image") and rows["2_left"]["gradability"] == ""

    res = CliRunner().invoke(predict_cli, [*base, "--out", str(tmp_path / "sub.csv"), "--submission", str(sample)])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "sub.csv").read_text().splitlines()
    assert lines[0] == "image,level" and [line.split(",")[0] for line in lines[1:]] == ["1_left", "1_right", "2_left", "3_right"]
    assert lines[1] == f"1_left,{rows['1_left']['level']}" and lines[3] == "2_left,0" and lines[4] == "3_right,0"
    assert "2 id(s) without a graded photo got grade 0: 2_left 3_right" in res.stderr


def test_bad_checkpoint_and_submission_are_one_line_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from sightx.cli import predict as predict_cli

    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"not a checkpoint")
    res = CliRunner().invoke(predict_cli, [str(tmp_path), "--checkpoint", str(fake), "--quiet"])
    assert res.exit_code == 1 and "not a SightX checkpoint" in res.output
    sample = tmp_path / "s.csv"
    sample.write_text("id,level\n1,0\n")
    res = CliRunner().invoke(predict_cli, [str(tmp_path), "--checkpoint", str(tiny_checkpoint), "--submission", str(sample), "--quiet"])
    assert res.exit_code == 1 and "no 'image' column" in res.output
