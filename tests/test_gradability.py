"""The gradability score: what it separates, how it moves, and the real photographs, all through the
real preprocessing path (sightx.image.preprocess) on real JPEGs."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from sightx.cli import shard as shard_cli
from sightx.cli import train as train_cli
from sightx.contracts import manifest as mf
from sightx.contracts.rejects import FILE as REJECTS
from sightx.contracts.sample import meta_of, read_samples
from sightx.evaluation.metrics import roc_auc
from sightx.image import codec, gradability, gradability_features
from sightx.image.fov import Circle
from sightx.image.gradability_fit import FIT
from sightx.image.preprocess import PreprocessOptions, decode_bytes, preprocess_decoded
from sightx.inference.warnings import photo_warnings
from sightx.synth.camera import UNGRADABLE_KINDS
from sightx.synth.generate import SynthOptions, generate
from sightx.synth.render import ImageSpec, render
from sightx.train import TrainConfig, train

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "fundus-real"
OPTS = PreprocessOptions(size=512)
SIZE = (768, 512)  # a small camera keeps rendering cheap; the field is still 1.8x the analysis size
THRESHOLD = gradability.DEFAULT_THRESHOLD
FAST = ["--arch", "resnet18", "--image-size", "32", "--batch-size", "8", "--workers", "0", "--epochs", "1", "--quiet"]


def _info(jpeg: bytes, opts: PreprocessOptions = OPTS) -> dict:
    """The preprocessing facts as sightx-predict gets them (the centre square when no field is found)."""
    return preprocess_decoded(decode_bytes(jpeg, opts), opts, centre_fallback=True).info


def _score(jpeg: bytes, opts: PreprocessOptions = OPTS) -> float:
    return _info(jpeg, opts)["gradability"]["score"]


@pytest.fixture(scope="module")
def seeded_set() -> list[tuple[str, float]]:
    """(kind, score) for 12 gradable shots and 12 ungradable ones of the generator's four kinds."""
    out = []
    for i in range(12):
        for rate in (0.0, 1.0):
            shot = render(ImageSpec((18, i), i % 5, i % 2 == 0, SIZE, 90, rate))
            out.append((shot.shot.ungradable or "good", _score(shot.jpeg)))
    return out


def test_score_separates_the_generators_ungradable_shots(seeded_set: list[tuple[str, float]]) -> None:
    kinds = Counter(k for k, _ in seeded_set)
    assert set(kinds) == {"good", *UNGRADABLE_KINDS} and kinds["good"] == 12
    auc = roc_auc([k == "good" for k, _ in seeded_set], [s for _, s in seeded_set])
    assert auc is not None and auc >= 0.9, auc
    good = [s for k, s in seeded_set if k == "good"]
    bad = [s for k, s in seeded_set if k != "good"]
    assert np.mean([s >= THRESHOLD for s in good]) >= 0.9 and np.mean([s < THRESHOLD for s in bad]) >= 0.8


@pytest.fixture(scope="module")
def good_photo() -> np.ndarray:
    shot = render(ImageSpec((18, 3), 2, True, (1536, 1024), 92, 0.0))
    assert shot.shot.ungradable is None
    return codec.decode(shot.jpeg)[0]


def _falls(scores: list[float]) -> None:
    """From gradable to ungradable, never rising on the way: the gate holds this where the fitted model,
    far outside the real photos it was fitted on, need not."""
    assert scores[0] >= THRESHOLD > scores[-1], scores
    assert all(b <= a + 1e-9 for a, b in zip(scores, scores[1:])), scores  # never rises on the way
    assert scores[-1] < scores[0] - 0.5


def test_score_falls_as_a_photo_is_blurred_step_by_step(good_photo: np.ndarray) -> None:
    side = min(good_photo.shape[:2])
    steps = [0.0, 0.002, 0.004, 0.006, 0.009, 0.013, 0.02]  # Gaussian sigma, share of the short side
    copies = [good_photo if s == 0 else cv2.GaussianBlur(good_photo, (0, 0), s * side) for s in steps]
    _falls([_score(codec.encode(c, 95)) for c in copies])


def test_score_falls_as_a_photo_is_darkened_step_by_step(good_photo: np.ndarray) -> None:
    gains = [1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.08]
    copies = [(good_photo * g).astype(np.uint8) for g in gains]
    _falls([_score(codec.encode(c, 95)) for c in copies])


def test_low_score_is_a_warning_and_every_photo_records_its_components(good_photo: np.ndarray) -> None:
    good = _info(codec.encode(good_photo, 95))
    dark = _info(codec.encode((good_photo * 0.08).astype(np.uint8), 95))
    assert set(good["gradability"]) == {"score", "components", "reason", "source"} and good["gradability"]["source"] == "fitted"
    assert good["gradability"]["reason"] is None and dark["gradability"]["reason"] == "too dark"
    assert set(good["gradability"]["components"]) == set(gradability.RANGES)
    assert all(0 <= v <= 1 for v in good["gradability"]["components"].values())
    assert "possibly-ungradable" not in photo_warnings(good)
    assert "possibly-ungradable" in photo_warnings(dark) and dark["gradability"]["components"]["exposure"] == 0
    assert photo_warnings({"brightness": 90.0}) == []  # a sample written before the score: nothing to say


def test_score_is_about_the_photo_not_the_output_size(good_photo: np.ndarray) -> None:
    jpeg = codec.encode(good_photo, 95)
    blurred = codec.encode(cv2.GaussianBlur(good_photo, (0, 0), 0.009 * min(good_photo.shape[:2])), 95)
    for data in (jpeg, blurred):
        scores = [_score(data, PreprocessOptions(size=s)) for s in (128, 256, 512)]
        assert max(scores) - min(scores) < 0.15, scores


def test_no_field_found_means_ungradable() -> None:
    noise = np.random.default_rng(0).integers(0, 255, (600, 800, 3), dtype=np.uint8)
    info = _info(codec.encode(noise, 90))
    assert info["fov_fallback"] and info["gradability"]["components"]["field"] == 0 and info["gradability"]["score"] == 0


def test_one_fatal_defect_closes_the_gate_and_says_which() -> None:
    fine = {"brightness": 90.0, "vessels": 0.02}
    assert gradability.gate(fine, 0.95, True) == (1.0, "")
    assert gradability.gate(fine, 0.95, False) == (0.0, "field")
    assert gradability.gate({**fine, "brightness": 2.0}, 0.95, True) == (0.0, "dark")
    assert gradability.gate({**fine, "brightness": 250.0}, 0.95, True) == (0.0, "washed")
    assert gradability.gate(fine, 0.4, True) == (0.0, "cut")
    assert gradability.gate({**fine, "vessels": 0.0005}, 0.95, True) == (0.0, "vessels")
    # Monotonic in each part between its fatal and its good-enough level.
    assert gradability.gate({**fine, "brightness": 6.0}, 0.95, True)[0] < gradability.gate({**fine, "brightness": 8.0}, 0.95, True)[0]
    assert gradability.gate(fine, 0.6, True)[0] < gradability.gate(fine, 0.7, True)[0]
    assert gradability.gate({**fine, "vessels": 0.0015}, 0.95, True)[0] < gradability.gate({**fine, "vessels": 0.0025}, 0.95, True)[0]


def test_the_shipped_fit_matches_the_measures_and_the_threshold() -> None:
    """gradability_fit.py is written by tools/fit_gradability.py: one coefficient per measure, its
    threshold the default, and the figures it was chosen by recorded beside it."""
    assert tuple(FIT["features"]) == gradability_features.FEATURES
    assert len(FIT["coef"]) == len(FIT["mean"]) == len(FIT["scale"]) == len(FIT["features"])
    assert FIT["threshold"] == THRESHOLD and 0 < THRESHOLD < 1
    assert {"cv_auc", "sensitivity", "specificity", "photos"} <= set(FIT["cv"]) and FIT["cv"]["specificity"] >= 0.9
    p, pull = gradability.fitted(dict.fromkeys(gradability_features.FEATURES, 0.5))
    assert 0 < p < 1 and set(pull) <= set(gradability_features.REASONS)


def test_a_low_score_says_why_in_words(good_photo: np.ndarray) -> None:
    side = min(good_photo.shape[:2])
    blurred = _info(codec.encode(cv2.GaussianBlur(good_photo, (0, 0), 0.02 * side), 95))["gradability"]
    assert blurred["score"] < THRESHOLD and blurred["reason"] == "vessels not visible: blur"
    cut = good_photo.copy()
    cut[: int(0.4 * cut.shape[0])] = 0  # the top 40% of the photo lost: much of the field with it
    record = _info(codec.encode(cut, 95))["gradability"]
    assert record["score"] < THRESHOLD and record["reason"] in set(gradability.GATE_REASONS.values()) | set(
        gradability_features.REASONS.values()
    )


def test_cut_off_field_is_measured_inside_the_frame_only() -> None:
    """A field cut off at top and bottom: the black padding counts neither as dark sectors nor as vessels."""
    rng = np.random.default_rng(1)
    img = np.zeros((256, 256, 3), np.uint8)
    c = Circle(127.5, 127.5, 128)
    inside = (np.hypot(*np.mgrid[:256, :256] - 127.5) <= 128)[..., None]
    img[:] = np.where(inside, np.array([170, 85, 40], np.uint8), 0)
    img = np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8) * inside
    img[:40] = 0
    img[-40:] = 0
    m = gradability.measures(img, c, (0.0, 40.0, 256.0, 216.0))
    assert m["uniformity"] == 1.0 and m["vessels"] < 0.01  # flat: no vessels, and no false ones at the padding edge


@pytest.mark.skipif(not REAL.is_dir(), reason="real photographs not available")
def test_real_photographs_are_gradable_and_their_degraded_copies_are_not() -> None:
    photos = sorted(REAL.glob("*.jpg"))
    assert len(photos) == 7
    for path in photos:
        data = path.read_bytes()
        assert _score(data) >= THRESHOLD, path.name
        small = codec.decode(data, (1024, 1024))[0]  # the copies from a reduced decode: cheaper, the same eye
        blurred = cv2.GaussianBlur(small, (0, 0), 0.01 * min(small.shape[:2]))
        assert _score(codec.encode(blurred, 95)) < THRESHOLD, path.name
        assert _score(codec.encode((small * 0.15).astype(np.uint8), 95)) < THRESHOLD, path.name


# --- the gate in sightx-shard, the minimum in sightx-train ---------------------------


@pytest.fixture(scope="module")
def mixed_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 photos, about half of them ungradable shots."""
    root = tmp_path_factory.mktemp("mixed_raw")
    generate(root, SynthOptions(n=16, seed=5, sizes=(SIZE,), ungradable_rate=0.5, balanced=True, workers=2, progress=False))
    return root


def _shard(raw: Path, out: Path, *extra: str) -> None:
    args = [str(raw / "train"), str(out), "--size", "256", "--shard-size", "4", "--val-fraction", "0.25", "--workers", "1", "--quiet"]
    result = CliRunner().invoke(shard_cli, [*args, *extra])
    assert result.exit_code == 0, result.output


def _scores(shards: Path) -> dict[str, tuple[str, float]]:
    """image -> (split, score) for every stored sample."""
    out = {}
    for tar in sorted(shards.glob("*.tar")):
        for _, parts in read_samples(tar):
            meta = meta_of(parts)
            out[meta["image"]] = (meta["split"], meta["gradability"]["score"])
    return out


def _rejects(shards: Path) -> dict[str, dict[str, str]]:
    with open(shards / REJECTS, newline="") as f:
        return {r["image"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def recorded(mixed_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("recorded")
    _shard(mixed_raw, out)
    return out


def test_shard_records_by_default_and_the_gate_rejects_below_it(mixed_raw: Path, recorded: Path, tmp_path: Path) -> None:
    scores = _scores(recorded)
    before = _rejects(recorded)  # photos without a usable field (no-fov): rejected whatever the gate
    assert len(scores) + len(before) == 16 and {r["reason"] for r in before.values()} <= {"no-fov", "fov-too-small"}
    low = {image for image, (_, s) in scores.items() if s < THRESHOLD}  # the default records scores, rejects none
    assert 0 < len(low) < len(scores)
    _shard(mixed_raw, tmp_path / "gated", "--gate", f"gradability={THRESHOLD}")
    rejects = _rejects(tmp_path / "gated")
    gated = {image: r for image, r in rejects.items() if image not in before}
    assert set(gated) == low and {r["reason"] for r in gated.values()} == {"ungradable"}
    assert all(r["detail"].startswith("gradability=") for r in gated.values())
    assert set(_scores(tmp_path / "gated")) == set(scores) - low
    manifest = mf.read(tmp_path / "gated")
    assert manifest["options"]["min_quality"] == [["gradability", THRESHOLD]]
    bad = CliRunner().invoke(shard_cli, [str(mixed_raw / "train"), str(tmp_path / "x"), "--gate", "gradabilty=0.5"])
    assert bad.exit_code == 2 and "unknown metric 'gradabilty'" in bad.output and "Traceback" not in bad.output


def test_train_skips_samples_below_the_minimum_and_counts_them(recorded: Path, tmp_path: Path) -> None:
    scores = _scores(recorded)
    low = Counter(split for split, s in scores.values() if s < 0.6)
    cfg = dict(arch="resnet18", image_size=32, batch_size=8, workers=0, epochs=1, balance="none", progress=False)
    train(TrainConfig(shards=str(recorded), out=str(tmp_path / "run"), min_gradability=0.6, **cfg))  # type: ignore[arg-type]
    (row,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert low["train"] > 0 and row["ungradable_skipped"] == low["train"] and row["val_ungradable_skipped"] == low["val"]
    assert row["train_images"] == mf.read(recorded)["splits"]["train"]["count"] - low["train"]
    assert row["val"]["n"] == mf.read(recorded)["splits"]["val"]["count"] - low["val"]


def test_train_minimum_on_shards_without_scores_is_one_line(recorded: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(recorded, old)
    for tar in old.glob("*.tar"):  # as written before the score: the key renamed, sizes unchanged
        tar.write_bytes(tar.read_bytes().replace(b'"gradability":', b'"gradabilitx":'))
    result = CliRunner().invoke(train_cli, [str(old), "--out", str(tmp_path / "run"), "--min-gradability", "0.5", *FAST])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "record no gradability score" in result.output and len(result.output.strip().splitlines()) == 1
