"""The synthetic EyePACS generator's contract: layout, labels, determinism, distribution, realism."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import simplejpeg
from click.testing import CliRunner
from PIL import Image

from sightx.cli import synth
from sightx.synth.camera import CAMERA_MIX, draw_shot
from sightx.synth.generate import EYEPACS_GRADES, SynthOptions, generate, plan
from sightx.synth.render import ImageSpec, render

SMALL = ((640, 427),)


def _labels(root: Path) -> list[tuple[str, int]]:
    with open(root / "trainLabels.csv", newline="") as f:
        return [(r["image"], int(r["level"])) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "raw"
    generate(out, SynthOptions(n=12, seed=3, sizes=SMALL, corrupt=4, n_test=4, workers=1, progress=False))
    return out


def test_kaggle_layout(small_set: Path) -> None:
    labels = _labels(small_set)
    assert len(labels) == 12 + 4
    names = {n for n, _ in labels}
    files = {p.stem for p in (small_set / "train").glob("*.jpeg")}
    assert files == names
    for name, level in labels:
        patient, eye = name.split("_")
        assert patient.isdigit() and eye in ("left", "right") and 0 <= level <= 4
    # Both eyes of every (non-corrupt) patient.
    eyes = Counter(n.split("_")[0] for n, _ in labels[:12])
    assert set(eyes.values()) == {2}
    test_files = sorted((small_set / "test").glob("*.jpeg"))
    assert len(test_files) == 4 and not names & {p.stem for p in test_files}
    assert not list(small_set.rglob("*.tmp"))


def test_images_have_requested_size_and_are_jpeg(small_set: Path) -> None:
    good = [p for p in (small_set / "train").glob("*.jpeg") if p.stat().st_size > 0]
    decoded = 0
    for path in good:
        data = path.read_bytes()
        if data[:3] != b"\xff\xd8\xff" or not data.rstrip(b"\0").endswith(b"\xff\xd9"):
            continue
        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        assert (w, h) == SMALL[0]
        decoded += 1
    assert decoded == 12


def test_corrupt_files_are_really_corrupt(small_set: Path) -> None:
    truth = {r["path"]: r for r in csv.DictReader(open(small_set / "synthTruth.csv"))}
    kinds = {Path(p).stem: r["corrupt"] for p, r in truth.items() if r.get("corrupt")}
    assert sorted(kinds.values()) == ["png", "text", "truncated", "zero-byte"]
    for stem, kind in kinds.items():
        data = (small_set / "train" / f"{stem}.jpeg").read_bytes()
        if kind == "zero-byte":
            assert data == b""
        elif kind == "text":
            assert not data.startswith(b"\xff\xd8")
        elif kind == "png":
            assert data.startswith(b"\x89PNG")
        else:
            assert data.startswith(b"\xff\xd8") and not data.endswith(b"\xff\xd9")
            with pytest.raises(OSError):
                Image.open(io.BytesIO(data)).load()


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    opts = dict(n=4, seed=7, sizes=SMALL, corrupt=2, progress=False)
    generate(tmp_path / "a", SynthOptions(workers=1, **opts))
    generate(tmp_path / "b", SynthOptions(workers=2, **opts))
    generate(tmp_path / "c", SynthOptions(workers=1, **{**opts, "seed": 8}))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 4 + 2 + 2
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    a = sorted((tmp_path / "a" / "train").glob("*.jpeg"))[0].read_bytes()
    c = sorted((tmp_path / "c" / "train").glob("*.jpeg"))[0].read_bytes()
    assert a != c


def test_grade_distribution_matches_eyepacs_and_balanced() -> None:
    _, labels = plan(Path("x"), SynthOptions(n=20000, seed=1))
    freq = np.bincount([g for _, g in labels], minlength=5) / len(labels)
    assert np.allclose(freq, EYEPACS_GRADES, atol=0.012)
    _, labels = plan(Path("x"), SynthOptions(n=20000, seed=1, balanced=True))
    freq = np.bincount([g for _, g in labels], minlength=5) / len(labels)
    assert np.allclose(freq, 0.2, atol=0.015)


def test_eyes_of_a_patient_have_correlated_grades() -> None:
    _, labels = plan(Path("x"), SynthOptions(n=20000, seed=2, balanced=True))
    left = np.array([g for n, g in labels if n.endswith("_left")])
    right = np.array([g for n, g in labels if n.endswith("_right")])
    assert np.corrcoef(left, right)[0, 1] > 0.6
    assert np.mean(left == right) < 0.95  # but not always identical


def test_default_sizes_are_the_camera_mix() -> None:
    rng = np.random.default_rng(0)
    drawn = Counter((s.width, s.height) for s in (draw_shot(rng, None, 0.0) for _ in range(2000)))
    assert set(drawn) == {size for size, _ in CAMERA_MIX}
    assert drawn[(3888, 2592)] > drawn[(1024, 683)]
    cut = sum(s.radius * 2 > s.height for s in (draw_shot(rng, None, 0.0) for _ in range(500)))
    assert 0.2 < cut / 500 < 0.45  # a share of fields is cut off at top and bottom


def test_full_size_file_is_in_the_real_eyepacs_bits_per_pixel_range() -> None:
    sizes = []
    for i in range(3):
        r = render(ImageSpec((5, i), 2, bool(i % 2), (3888, 2592), 90, 0.0))
        sizes.append(len(r.jpeg) * 8 / (3888 * 2592))
    assert 0.5 <= float(np.median(sizes)) <= 1.3, sizes


def _red_dots(healthy: bytes, diseased: bytes) -> int:
    """Small round spots darker than the same eye rendered healthy (green channel: most contrast)."""
    diff = simplejpeg.decode_jpeg(healthy)[..., 1].astype(np.int16) - simplejpeg.decode_jpeg(diseased)[..., 1]
    spots = (diff > 12).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(spots)
    w, h, area = stats[1:, 2], stats[1:, 3], stats[1:, 4]
    round_small = (np.maximum(w, h) <= 14) & (area >= 4) & (np.minimum(w, h) >= 0.5 * np.maximum(w, h))
    return int(round_small.sum())


def test_same_seed_renders_the_same_eye_at_any_grade() -> None:
    a = simplejpeg.decode_jpeg(render(ImageSpec((4,), 0, True, (800, 533), 92, 0.0)).jpeg)
    b = simplejpeg.decode_jpeg(render(ImageSpec((4,), 3, True, (800, 533), 92, 0.0)).jpeg)
    changed = np.abs(a.astype(np.int16) - b).max(axis=2) > 10
    assert 0 < changed.mean() < 0.2  # lesions change some pixels, the eye itself is the same


def test_red_dot_count_grows_with_grade() -> None:
    def dots(grade: int) -> float:
        pairs = [
            (
                render(ImageSpec((9, i), 0, bool(i), (1600, 1067), 92, 0.0)).jpeg,
                render(ImageSpec((9, i), grade, bool(i), (1600, 1067), 92, 0.0)).jpeg,
            )
            for i in range(3)
        ]
        return float(np.mean([_red_dots(h, d) for h, d in pairs]))

    counts = {g: dots(g) for g in (1, 2, 3)}
    assert 1 <= counts[1] < counts[2] < counts[3], counts


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(synth, [str(tmp_path / "x"), "--size", "big"])
    assert bad.exit_code == 2 and "WIDTHxHEIGHT" in bad.output and "Traceback" not in bad.output
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = runner.invoke(synth, [str(blocker / "sub"), "--n", "2", "--size", "320x240", "--quiet", "--workers", "1"])
    assert res.exit_code == 1 and "cannot write" in res.output and res.exception.__class__ is SystemExit


def test_cli_writes_the_set(tmp_path: Path) -> None:
    res = CliRunner().invoke(synth, [str(tmp_path / "raw"), "--n", "4", "--size", "320x240", "--quiet", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "wrote 4 train" in res.output
    assert len(_labels(tmp_path / "raw")) == 4


def test_ungradable_kinds_and_gradable_shots_untouched_by_them() -> None:
    from sightx.image.fov import Circle, visible_fraction
    from sightx.synth.camera import UNGRADABLE_KINDS

    shots = [draw_shot(np.random.default_rng(s), (3888, 2592), 0.3) for s in range(80)]
    kinds = Counter(s.ungradable for s in shots)
    assert set(kinds) == {None, *UNGRADABLE_KINDS}
    for seed, shot in enumerate(shots):
        if shot.ungradable is None:  # the kind is one draw inside the ungradable branch: gradable shots draw as at rate 0
            assert shot == draw_shot(np.random.default_rng(seed), (3888, 2592), 0.0)
        elif shot.ungradable == "off-frame":
            assert visible_fraction((shot.height, shot.width), Circle(shot.cx, shot.cy, shot.radius)) < 0.65
        elif shot.ungradable == "haze":
            assert shot.haze >= 0.85 and shot.blur_sigma > 0


def test_quirks_come_from_their_own_stream() -> None:
    from sightx.synth.camera import QUIRKS

    shots = [draw_shot(np.random.default_rng(s), (1000, 1000), 0.0, 1.0) for s in range(30)]
    assert {s.quirk for s in shots} == set(QUIRKS)
    for seed, shot in enumerate(shots):
        plain = draw_shot(np.random.default_rng(seed), (1000, 1000), 0.0)
        assert plain.quirk is None and plain.vignette == 0.0
        assert shot.noise == plain.noise and shot.gamma == plain.gamma  # the shot's own draws are unchanged
        if shot.quirk == "fills-frame":  # from only the corners dark to no dark edge at all
            assert 0.8 * np.hypot(1000, 1000) / 2 <= shot.radius <= 1.15 * np.hypot(1000, 1000) / 2
        elif shot.quirk == "very-dark":
            assert shot.gain <= 0.2 and shot.vignette > 0
        else:
            assert shot.vignette >= 0.55
    a, b = np.random.default_rng(0), np.random.default_rng(0)
    draw_shot(a, None, 0.0, 1.0)
    draw_shot(b, None, 0.0)
    assert a.random() == b.random()  # so the image drawn after the shot is unchanged too
