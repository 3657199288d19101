"""Training input pipeline: exact epochs across workers and ranks, balancing, no unpickling."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from sightx.contracts import manifest as mf
from sightx.train import balance
from sightx.train.augment import Augment
from sightx.train.stream import StreamConfig, make_loader, shard_paths


def _keys(shards: Path, world: int, workers: int, epoch: int = 0, **kw) -> list[str]:
    """Every key one epoch yields over all ranks (simulated with RANK/WORLD_SIZE, as torchrun sets)."""
    m = mf.read(shards)
    cfg = StreamConfig(
        tuple(shard_paths(shards, m, "train")), image_size=32, train=True, seed=5, counts=tuple(m["splits"]["train"]["grades"]), **kw
    )
    keys: list[str] = []
    for rank in range(world):
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
        try:
            loader, epoch_value = make_loader(cfg, batch_size=3, workers=workers)
            epoch_value.value = epoch
            for images, _grades, _weights, k in loader:
                assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
                keys += list(k)
        finally:
            del os.environ["RANK"], os.environ["WORLD_SIZE"]
    return keys


@pytest.mark.parametrize("world, workers", [(1, 0), (1, 2), (2, 2), (3, 1)])
def test_an_epoch_yields_every_sample_exactly_once(tiny_shards: Path, world: int, workers: int) -> None:
    m = mf.read(tiny_shards)
    expected = m["splits"]["train"]["count"]
    keys = _keys(tiny_shards, world, workers, balance="none", shuffle_buffer=8)
    assert len(keys) == expected and len(set(keys)) == expected


def test_epochs_are_shuffled_differently_but_reproducibly(tiny_shards: Path) -> None:
    a0 = _keys(tiny_shards, 1, 0, epoch=0, shuffle_buffer=8)
    assert a0 == _keys(tiny_shards, 1, 0, epoch=0, shuffle_buffer=8)
    a1 = _keys(tiny_shards, 1, 0, epoch=1, shuffle_buffer=8)
    assert a0 != a1 and sorted(a0) == sorted(a1)


def test_loss_mode_carries_the_manifest_class_weights(tiny_shards: Path) -> None:
    m = mf.read(tiny_shards)
    weights = m["splits"]["train"]["class_weights"]["inverse"]
    cfg = StreamConfig(
        tuple(shard_paths(tiny_shards, m, "train")),
        32,
        True,
        counts=tuple(m["splits"]["train"]["grades"]),
        balance="loss",
        loss_weights=True,
    )
    loader, _ = make_loader(cfg, batch_size=4, workers=0)
    for _, grades, w, _ in loader:
        assert torch.allclose(w.float(), torch.tensor([weights[g] for g in grades.tolist()], dtype=torch.float32))


EYEPACS = [7350, 700, 1500, 250, 200]


def _resampled_mix(mode: str, epoch: int) -> np.ndarray:
    target = balance.target_distribution(mode, EYEPACS, epoch, decay=0.5)
    ratios = balance.resample_ratios(EYEPACS, target)
    samples = [{"cls": str(g).encode()} for g, n in enumerate(EYEPACS) for _ in range(n)]
    out = Counter(int(s["cls"]) for s in balance.resample(samples, ratios, np.random.default_rng(0)))
    return np.array([out[g] for g in range(5)]) / sum(out.values())


def test_balancing_modes_change_the_class_mix_as_specified() -> None:
    natural = np.array(EYEPACS) / sum(EYEPACS)
    assert np.allclose(_resampled_mix("none", 0), natural)
    assert np.allclose(_resampled_mix("loss", 3), natural)
    assert np.allclose(_resampled_mix("sample", 0), 0.2, atol=0.015)
    assert np.allclose(_resampled_mix("progressive", 0), 0.2, atol=0.015)
    late = _resampled_mix("progressive", 8)  # 0.5**8 of the way from uniform: nearly natural
    assert np.allclose(late, natural, atol=0.02)
    mid = _resampled_mix("progressive", 1)
    assert natural[0] > mid[0] > 0.2  # on its way


def test_resampling_keeps_the_epoch_length() -> None:
    target = balance.target_distribution("sample", EYEPACS, 0, 0.5)
    ratios = balance.resample_ratios(EYEPACS, target)
    assert float(np.dot(ratios, EYEPACS)) == pytest.approx(sum(EYEPACS))


def test_sample_mode_streams_more_minority_grades(tmp_path: Path) -> None:
    """End to end on real shards of an EyePACS-like (imbalanced) set."""
    from sightx.image.preprocess import PreprocessOptions
    from sightx.shard import ShardOptions, run
    from sightx.synth.generate import SynthOptions, generate

    raw = tmp_path / "raw"
    generate(raw, SynthOptions(n=60, seed=4, sizes=((400, 300),), workers=1, progress=False))
    run(raw, tmp_path / "s", ShardOptions(PreprocessOptions(size=32), shard_size=10, val_fraction=0, workers=1, progress=False))
    m = mf.read(tmp_path / "s")
    grade0 = m["splits"]["train"]["grades"][0] / m["splits"]["train"]["count"]
    shards = tuple(shard_paths(tmp_path / "s", m, "train"))
    counts = tuple(m["splits"]["train"]["grades"])
    seen = Counter()
    for epoch in range(5):
        loader, ev = make_loader(StreamConfig(shards, 32, True, seed=epoch, balance="sample", counts=counts), 16, 0)
        for _, grades, _, _ in loader:
            seen.update(grades.tolist())
    assert grade0 > 0.5 and seen[0] / sum(seen.values()) < grade0 - 0.2


def test_pickle_members_in_a_shard_are_never_loaded(tiny_shards: Path, tmp_path: Path) -> None:
    """A hostile shard: a .pyd member whose unpickling would write a marker file."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    src = sorted(tiny_shards.glob("train-*.tar"))[0]
    hostile = tmp_path / "train-000000.tar"
    with tarfile.open(src) as tin, tarfile.open(hostile, "w") as tout:
        for member in tin:
            data = tin.extractfile(member).read()
            tout.addfile(member, io.BytesIO(data))
            if member.name.endswith(".json"):
                key = member.name.rsplit(".", 1)[0]
                payload = pickle.dumps(Evil())
                for ext in ("pyd", "pth", "pickle"):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(payload)
                    tout.addfile(info, io.BytesIO(payload))
    cfg = StreamConfig((str(hostile),), 32, train=False)
    loader, _ = make_loader(cfg, batch_size=2, workers=0)
    n = sum(len(k) for *_, k in loader)
    assert n == mf.read(tiny_shards)["shards"][0]["count"]
    assert not marker.exists()


def _images(shards: Path, train: bool, workers: int, augment: Augment | None) -> list[torch.Tensor]:
    m = mf.read(shards)
    split = "train" if train else "val"
    cfg = StreamConfig(tuple(shard_paths(shards, m, split)), image_size=32, train=train, seed=3, shuffle_buffer=0, augment=augment)
    loader, _ = make_loader(cfg, batch_size=4, workers=workers)
    return [images for images, *_ in loader]


def test_randaugment_runs_in_spawned_workers_reproducibly_and_never_in_validation(tiny_shards: Path) -> None:
    rand = Augment(32, randaugment=(2, 9))
    first = _images(tiny_shards, True, 1, rand)  # a spawned worker: the augmentation pickles, and is seeded there
    assert all(torch.equal(a, b) for a, b in zip(first, _images(tiny_shards, True, 1, rand), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(first, _images(tiny_shards, True, 0, Augment(32)), strict=True))
    val, plain = _images(tiny_shards, False, 0, rand), _images(tiny_shards, False, 0, None)
    assert val and all(torch.equal(a, b) for a, b in zip(val, plain, strict=True))  # the evaluation transform, as ever
