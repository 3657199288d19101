"""Training augmentation and evaluation transforms on arrays of known content."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sightx.inference.transforms import EvalTransform, to_tensor
from sightx.train.augment import Augment


def disk(side: int = 512, frac: float = 0.45) -> np.ndarray:
    """A bright orange disk centred on black, like a preprocessed fundus."""
    img = np.zeros((side, side, 3), np.uint8)
    cv2.circle(img, (side // 2, side // 2), round(frac * side), (200, 120, 60), -1, lineType=cv2.LINE_AA)
    return img


@pytest.mark.parametrize(("side", "size"), [(512, 512), (512, 384), (300, 512)])
def test_output_is_a_uint8_chw_tensor(side: int, size: int) -> None:
    out = Augment(size)(disk(side), np.random.default_rng(0))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
    assert out.shape == (3, size, size) and out.stride() == (1, 3 * size, 3)  # HWC memory, no copy


def test_same_generator_state_same_view_and_views_vary() -> None:
    img, aug = disk(), Augment(256)
    a = aug(img, np.random.default_rng(5))
    assert torch.equal(a, aug(img, np.random.default_rng(5)))
    views = [aug(img, np.random.default_rng(s)) for s in range(6)]
    assert len({v.numpy().tobytes() for v in views}) == 6


def test_disk_stays_centred_and_scaled_within_the_ranges() -> None:
    aug, img = Augment(512), disk()
    for seed in range(20):
        out = aug(img, np.random.default_rng(seed)).permute(1, 2, 0).numpy()
        inside = out.max(axis=2) > 30
        ys, xs = np.nonzero(inside)
        shift = math.hypot(xs.mean() - 255.5, ys.mean() - 255.5)
        assert shift <= 0.04 * 512 * math.sqrt(2) + 1
        radius = math.sqrt(inside.sum() / math.pi)
        assert 0.92 * 0.45 * 512 - 3 <= radius <= 1.08 * 0.45 * 512 + 3


def test_geometry_flips_and_rotates_about_the_centre() -> None:
    aug = Augment(100, translate=0.0, scale=(1.0, 1.0))
    seen_det = set()
    for seed in range(40):
        m = aug.geometry((100, 100), np.random.default_rng(seed))
        centre = m @ np.array([49.5, 49.5, 1.0])
        assert centre == pytest.approx([49.5, 49.5], abs=1e-9)  # no shift, no zoom: the centre is fixed
        det = np.linalg.det(m[:, :2])
        assert abs(abs(det) - 1) < 1e-9  # a rotation, possibly with one flip
        seen_det.add(round(det))
    assert seen_det == {-1, 1}  # both handedness: flips happen


def test_colour_jitter_keeps_grey_grey_and_scales_brightness_within_range() -> None:
    aug = Augment(64, degrees=0, translate=0, scale=(1, 1))
    grey = np.full((64, 64, 3), 100, np.uint8)
    for seed in range(20):
        out = aug(grey, np.random.default_rng(seed)).numpy()
        assert np.ptp(out.astype(int), axis=0).max() <= 1  # saturation has nothing to act on (rounding aside)
        assert 79 <= out[:, 32, 32].min() and out[:, 32, 32].max() <= 121  # brightness 0.8-1.2, contrast keeps a flat field


def test_colour_matrix_is_brightness_then_contrast_then_saturation() -> None:
    aug = Augment(8)
    img = np.random.default_rng(1).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    rng = np.random.default_rng(3)
    m = aug.colour(img, np.random.default_rng(3))
    b, c, s = (rng.uniform(1 - v, 1 + v) for v in (aug.brightness, aug.contrast, aug.saturation))
    x = img.reshape(-1, 3).astype(np.float64) * b
    grey_w = np.array([0.299, 0.587, 0.114])
    x = c * x + (1 - c) * (x @ grey_w).mean()
    x = s * x + (1 - s) * (x @ grey_w)[:, None]
    got = img.reshape(-1, 3).astype(np.float64) @ m[:, :3].T + m[:, 3]
    assert got == pytest.approx(x, abs=1e-3)


def test_eval_transform_resizes_only_when_needed() -> None:
    img = disk(256)
    same = EvalTransform(256)(img)
    assert torch.equal(same, to_tensor(img))
    assert EvalTransform(128)(img).shape == (3, 128, 128)


def test_randaugment_is_seeded_by_the_stream_and_leaves_torchs_generator_alone() -> None:
    img, plain, rand = disk(128), Augment(64), Augment(64, randaugment=(2, 9))
    before = torch.get_rng_state()
    a = rand(img, np.random.default_rng(5))
    assert torch.equal(torch.get_rng_state(), before)  # the trainer's own torch RNG (checkpointed) is untouched
    assert torch.equal(a, rand(img, np.random.default_rng(5)))
    assert a.dtype == torch.uint8 and a.shape == (3, 64, 64)
    views = [rand(img, np.random.default_rng(s)) for s in range(8)]
    assert len({v.numpy().tobytes() for v in views}) == 8
    # RandAugment acts after the warp and colour, which draw what they drew before it existed
    changed = [not torch.equal(v, plain(img, np.random.default_rng(s))) for s, v in enumerate(views)]
    assert sum(changed) >= 6  # (an operation may be the identity, or two may cancel out, for a seed or two)


def test_randaugment_pickles_and_runs_alike_in_a_spawned_worker() -> None:
    import pickle

    rand = Augment(48, randaugment=(3, 15))
    copy = pickle.loads(pickle.dumps(rand))
    assert copy == rand and torch.equal(copy(disk(96), np.random.default_rng(2)), rand(disk(96), np.random.default_rng(2)))


def test_randaugment_from_the_command_line_to_the_training_transform(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sightx.cli import train as train_cli
    from sightx.train.config import TrainConfig

    assert TrainConfig(shards=str(tmp_path), randaugment=(2, 9)).augment().randaugment == (2, 9)
    assert TrainConfig(shards=str(tmp_path)).augment().randaugment is None
    res = CliRunner().invoke(train_cli, [str(tmp_path), "--randaugment", "2.5,9"])
    assert res.exit_code == 2 and "not comma-separated whole numbers" in res.output
