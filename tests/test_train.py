"""Trainer, checkpoints, resume, DDP and prediction: real torch, real processes, tiny models."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import torch
from click.testing import CliRunner

from sightx.cli import train as train_cli
from sightx.contracts import manifest as mf
from sightx.contracts.checkpoint import load as load_checkpoint
from sightx.contracts.sample import read_samples
from sightx.inference.predict import predict
from sightx.models.factory import WeightsError, build_model
from sightx.train import TrainConfig, TrainError, train

SCRIPT = str(Path(sys.executable).parent / "sightx-train")  # the installed entry point
FAST = ["--arch", "resnet18", "--image-size", "32", "--batch-size", "8", "--workers", "0", "--quiet"]


def _cfg(shards: Path, out: Path, **kw) -> TrainConfig:
    base = dict(arch="resnet18", image_size=32, batch_size=8, workers=0, epochs=2, progress=False, lr=1e-3)
    return TrainConfig(shards=str(shards), out=str(out), **{**base, **kw})


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tiny_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    train(_cfg(tiny_shards, out))
    return out


def test_run_folder_has_metrics_checkpoints_and_charts(trained: Path, tiny_shards: Path) -> None:
    history = _history(trained)
    assert [h["epoch"] for h in history] == [1, 2]
    val = history[-1]["val"]
    n_val = mf.read(tiny_shards)["splits"]["val"]["count"]
    assert val["n"] == n_val and sum(map(sum, val["confusion"])) == n_val
    assert {"kappa", "accuracy", "per_grade_recall", "referable", "baseline", "loss"} <= set(val)
    assert history[-1]["train_images"] == mf.read(tiny_shards)["splits"]["train"]["count"]
    assert 0 <= history[-1]["data_wait"] <= 1 and history[-1]["images_per_s"] > 0
    for name in ("best.pt", "last.pt", "confusion.png", "learning_curve.png"):
        assert (trained / name).stat().st_size > 0
    state = load_checkpoint(trained / "best.pt")
    assert state.preprocess == mf.read(tiny_shards)["options"]["preprocess"] and state.arch == "resnet18"


def test_resume_after_sigkill_has_no_duplicated_epoch(tiny_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [SCRIPT, str(tiny_shards), "--out", str(out), "--epochs", "4", *FAST]
    proc = subprocess.Popen(cmd)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (out / "metrics.jsonl").exists() and len(_history(out)) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = load_checkpoint(out / "last.pt").epoch + 1
    assert 1 <= done < 4  # metrics.jsonl may already hold the next epoch: the resume must drop it
    refused = subprocess.run(cmd, capture_output=True, text=True)
    assert refused.returncode == 1 and "--resume" in refused.stderr
    subprocess.run(cmd + ["--resume"], check=True)
    assert [h["epoch"] for h in _history(out)] == [1, 2, 3, 4]
    assert load_checkpoint(out / "last.pt").epoch == 3


def test_regression_head_tunes_thresholds(tiny_shards: Path, tmp_path: Path) -> None:
    train(_cfg(tiny_shards, tmp_path, head="regress", epochs=1))
    val = _history(tmp_path)[-1]["val"]
    assert len(val["thresholds"]) == 4 and val["thresholds"] == sorted(val["thresholds"])
    assert val["kappa_tuned_thresholds"] >= val["kappa"] - 1e-9 or val["kappa"] == 0
    assert load_checkpoint(tmp_path / "best.pt").thresholds == pytest.approx(val["thresholds"], abs=1e-4)


@pytest.mark.parametrize("balance", ["sample", "progressive"])
def test_resampling_modes_train(tiny_shards: Path, tmp_path: Path, balance: str) -> None:
    train(_cfg(tiny_shards, tmp_path, balance=balance, epochs=1))
    assert _history(tmp_path)[0]["train_images"] > 0


def test_predict_on_raw_images_equals_predict_on_their_shards(trained: Path, tiny_raw: Path, tiny_shards: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpeg"
    bad.write_bytes(b"not a jpeg")
    from_raw = {r["image"]: r for r in predict([tiny_raw / "train", bad], trained / "best.pt", workers=2, device="cpu", progress=False)}
    from_shards = predict(sorted(tiny_shards.glob("*.tar")), trained / "best.pt", device="cpu", progress=False)
    assert len(from_shards) == mf.read(tiny_shards)["summary"]["written"]
    for row in from_shards:
        twin = from_raw[row["image"]]
        assert twin["level"] == row["level"] and not twin["error"]
        assert [twin[f"p{g}"] for g in range(5)] == pytest.approx([row[f"p{g}"] for g in range(5)], abs=1e-5)
        assert sum(row[f"p{g}"] for g in range(5)) == pytest.approx(1, abs=1e-4)
    assert from_raw["broken"]["error"].startswith("not-image") and from_raw["broken"]["level"] == ""


def test_predict_cli_writes_kaggle_csv_and_blends_eyes(trained: Path, tiny_raw: Path, tmp_path: Path) -> None:
    from sightx.cli import predict as predict_cli

    out = tmp_path / "pred.csv"
    res = CliRunner().invoke(
        predict_cli,
        [
            str(tiny_raw / "train"),
            "--checkpoint",
            str(trained / "best.pt"),
            "--out",
            str(out),
            "--blend-eyes",
            "--workers",
            "1",
            "--quiet",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("image,level,p0") and len(lines) == 41


def test_ddp_two_cpu_processes(tiny_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            SCRIPT,
            str(tiny_shards),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--balance",
            "none",
            "--device",
            "cpu",
            *FAST,
        ],
        check=True,
        timeout=300,
    )
    history = _history(out)
    assert [h["epoch"] for h in history] == [1, 2]
    # Shards are split across the two ranks and the epoch is still exact.
    assert all(h["train_images"] == mf.read(tiny_shards)["splits"]["train"]["count"] for h in history)
    assert history[-1]["val"]["n"] == mf.read(tiny_shards)["splits"]["val"]["count"]


PROBE = str(Path(__file__).with_name("ddp_probe.py"))


@pytest.mark.slow
def test_torchrun_two_nodes_see_every_sample_once_per_epoch(tiny_shards: Path, tmp_path: Path) -> None:
    """Two torchrun launchers as two nodes (--nnodes 2, one process each) meeting at a c10d rendezvous on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    keys, out = tmp_path / "keys", tmp_path / "run"
    keys.mkdir()
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d"]
    launch += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "sightx-two-nodes", PROBE, str(tiny_shards), str(out), str(keys)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on a small machine: one thread each
    nodes = [subprocess.Popen(launch, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        logs = [node.communicate(timeout=300)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [0, 0], logs
    seen = [json.loads((keys / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [s["world"] for s in seen] == [2, 2] and all(s["keys"] for s in seen)  # both ranks trained
    m = mf.read(tiny_shards)
    everything = [k for rec in mf.shards_of(m, "train") for k, _ in read_samples(mf.shard_file(tiny_shards, rec))]
    assert sorted(seen[0]["keys"] + seen[1]["keys"]) == sorted(everything)  # each sample once, on one rank only
    (row,) = _history(out)
    assert row["train_images"] == m["splits"]["train"]["count"] and row["val"]["n"] == m["splits"]["val"]["count"]


def _peak_rss_mb(args: list[str]) -> float:
    """Peak RSS of one training process, measured by a wrapper whose only child it is."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    res = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True)
    return int(res.stdout.split()[-1]) / 1024


def _write_shards(out: Path, n: int) -> None:
    """n real 384 px JPEG samples in shards of 50 with a valid manifest (pixels decoded: 440 KB each)."""
    out.mkdir()
    rng = np.random.default_rng(0)
    jpg = simplejpeg.encode_jpeg(rng.integers(0, 255, (384, 384, 3), dtype=np.uint8), quality=90)
    shards, grades = [], [0] * 5
    for s in range(0, n, 50):
        name = f"train-{s // 50:06d}.tar"
        counts = [0] * 5
        with tarfile.open(out / name, "w") as tar:
            for i in range(s, min(n, s + 50)):
                g = i % 5
                counts[g] += 1
                for ext, data in (("jpg", jpg), ("cls", str(g).encode()), ("json", json.dumps({"grade": g}).encode())):
                    info = tarfile.TarInfo(f"s{i}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        grades = [a + b for a, b in zip(grades, counts)]
        data = (out / name).read_bytes()
        shards.append(
            {
                "name": name,
                "split": "train",
                "digest": name,
                "done": True,
                "count": sum(counts),
                "grades": counts,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "input_bytes": 0,
                "rejects": [],
            }
        )
    mf.write(
        out,
        {
            "format": mf.FORMAT,
            "version": mf.VERSION,
            "complete": True,
            "options": {"preprocess": {}},
            "shards": shards,
            "splits": {"train": {"count": n, "grades": grades}},
        },
    )


def test_memory_does_not_grow_with_the_dataset(tmp_path: Path) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    _write_shards(small, 100)
    _write_shards(large, 800)  # holding it decoded would take 350 MB more
    # The shuffle buffer is the one place that holds samples: bounded by its size, not the dataset's.
    args = [SCRIPT, "--epochs", "1", "--shuffle-buffer", "50", *FAST]
    rss_small = _peak_rss_mb(args + [str(small), "--out", str(tmp_path / "a")])
    rss_large = _peak_rss_mb(args + [str(large), "--out", str(tmp_path / "b")])
    assert rss_large < rss_small * 1.1 + 40, (rss_small, rss_large)


def test_cli_errors_are_one_line(tiny_shards: Path, trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    res = runner.invoke(train_cli, [str(tmp_path / "nowhere"), *FAST])
    assert res.exit_code == 1 and "does not exist" in res.output
    res = runner.invoke(train_cli, [str(tmp_path), *FAST])
    assert res.exit_code == 1 and "manifest.json not found" in res.output
    res = runner.invoke(train_cli, [str(tiny_shards), "--out", str(trained), *FAST])
    assert res.exit_code == 1 and "already holds a run" in res.output
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):  # offline: a download meets a closed loopback port
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    res = runner.invoke(train_cli, [str(tiny_shards), "--out", str(tmp_path / "x"), "--weights", "imagenet", *FAST])
    assert res.exit_code == 1 and "not in the torch cache" in res.output and "could not be downloaded" in res.output
    # torchvision announces the download it tries ("Downloading: URL to FILE"); then SightX's one-line error
    lines = res.output.strip().splitlines()
    assert "Traceback" not in res.output and [line for line in lines if not line.startswith("Downloading")] == [lines[0]]
    assert lines[0].startswith("Error: ImageNet weights")
    res = runner.invoke(train_cli, [str(tiny_shards), "--out", str(tmp_path / "y"), *FAST, "--arch", "vit_h_14"])
    assert res.exit_code == 1 and "is neither a torchvision model SightX knows nor a timm model" in res.output
    with pytest.raises(WeightsError, match="not a tensor-only weights file"):
        evil = tmp_path / "evil.pt"
        evil.write_bytes(b"\x80\x04\x95garbage")
        build_model("resnet18", "classify", str(evil))
    with pytest.raises(TrainError, match="--balance"):
        TrainConfig(shards="x", balance="magic")


def test_weights_from_a_checkpoint_file(trained: Path) -> None:
    import torch

    model = build_model("resnet18", "classify", str(trained / "best.pt"))
    state = load_checkpoint(trained / "best.pt").model
    assert torch.equal(model.state_dict()["conv1.weight"], state["conv1.weight"])


def test_predict_survives_broken_shards(trained: Path, tiny_shards: Path, tmp_path: Path) -> None:
    src = sorted(tiny_shards.glob("train-*.tar"))[0]
    broken = tmp_path / "broken-sample.tar"
    with tarfile.open(src) as tin, tarfile.open(broken, "w") as tout:
        for i, member in enumerate(tin):
            data = tin.extractfile(member).read()
            if member.name.endswith(".jpg") and i < 3:
                data = data[:100]  # a truncated JPEG inside a shard
            member.size = len(data)
            tout.addfile(member, io.BytesIO(data))
    not_tar = tmp_path / "not-a.tar"
    not_tar.write_bytes(b"plain text, not a tar")
    rows = predict([broken, not_tar], trained / "best.pt", device="cpu", progress=False)
    errors = [r for r in rows if r["error"]]
    assert any(r["error"].startswith("corrupt sample") for r in errors)
    assert any(r["image"] == "not-a.tar" and r["error"].startswith("unreadable shard") for r in errors)
    assert any(r["level"] != "" for r in rows)


def test_refuses_incomplete_shards_wrong_device_and_changed_arch(tiny_shards: Path, trained: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    partial = tmp_path / "partial"
    shutil.copytree(tiny_shards, partial)
    m = mf.read(partial)
    m["complete"] = False
    mf.write(partial, m)
    res = runner.invoke(train_cli, [str(partial), "--out", str(tmp_path / "a"), *FAST])
    assert res.exit_code == 1 and "incomplete" in res.output
    res = runner.invoke(train_cli, [str(tiny_shards), "--out", str(tmp_path / "b"), "--device", "cuda:7", *FAST])
    assert res.exit_code == 1 and "not available" in res.output and "Traceback" not in res.output
    res = runner.invoke(
        train_cli, [str(tiny_shards), "--out", str(trained), "--resume", "--epochs", "3", *FAST[:-1], "--arch", "resnet34", "--quiet"]
    )
    assert res.exit_code == 1 and "--arch resnet18" in res.output


def test_a_last_batch_of_one_is_skipped_not_fatal_and_resume_passes_it(tiny_shards: Path, tmp_path: Path) -> None:
    """At 32 px ResNet's last feature map is 1x1, where BatchNorm fails on a batch of one."""
    n_train = mf.read(tiny_shards)["splits"]["train"]["count"]
    cfg = dict(batch_size=n_train - 1, balance="none", shuffle_buffer=0)
    train(_cfg(tiny_shards, tmp_path, epochs=1, **cfg))
    train(_cfg(tiny_shards, tmp_path, epochs=2, resume=True, **cfg))
    history = _history(tmp_path)
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["skipped_single_batches"] == 1 and h["train_images"] == n_train - 1 for h in history)


def test_imagenet_weights_come_from_torchvisions_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cached path: a weights file where torchvision's cache keeps it is loaded, nothing downloaded."""
    from sightx.models.factory import imagenet_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "cache"))
    for var in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    import torchvision

    reference = torchvision.models.resnet18(weights=None).state_dict()
    path = imagenet_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference, path)
    model = build_model("resnet18", "regress", "imagenet")
    assert torch.equal(model.state_dict()["layer4.1.bn2.weight"], reference["layer4.1.bn2.weight"])
    assert torch.equal(model.state_dict()["conv1.weight"], reference["conv1.weight"]) and model.fc.out_features == 1


@pytest.mark.parametrize("arch", ["efficientnet_b0", "convnext_tiny", "resnet18"])
def test_each_family_builds_and_takes_a_training_step(arch: str) -> None:
    from sightx.train.config import TrainConfig
    from sightx.train.loop import train_step
    from sightx.train.trainer import build_step

    model, ctx = build_step(TrainConfig(shards="", arch=arch, head="classify"), torch.device("cpu"))
    before = [p.detach().clone() for p in model.parameters()][-2:]
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    loss = train_step(ctx, images, torch.tensor([0, 3]), torch.ones(2))
    assert torch.isfinite(loss) and list(model(torch.zeros(1, 3, 64, 64)).shape) == [1, 5]
    assert any(not torch.equal(a, b) for a, b in zip(before, list(model.parameters())[-2:]))


def test_predict_reads_archives_in_place(trained: Path, tiny_raw: Path, tmp_path: Path) -> None:
    import zipfile

    photos = {f"test/{p.name}": p.read_bytes() for p in sorted((tiny_raw / "train").glob("*.jpeg"))}
    buf = tmp_path / "test.zip"
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in photos.items():
            zf.writestr(name, data)
    data = buf.read_bytes()
    (tmp_path / "parts").mkdir()
    half = -(-len(data) // 2)
    for i in range(2):
        (tmp_path / "parts" / f"test.zip.{i + 1:03d}").write_bytes(data[i * half : (i + 1) * half])
    competition = tmp_path / "diabetic-retinopathy-detection.zip"
    with zipfile.ZipFile(competition, "w", zipfile.ZIP_DEFLATED) as zf:
        for part in sorted((tmp_path / "parts").iterdir()):
            zf.write(part, part.name)
    expected = {r["image"]: r for r in predict([tiny_raw / "train"], trained / "best.pt", device="cpu", progress=False)}
    for inputs, workers in (([buf], 1), ([tmp_path / "parts"], 1), ([competition], 2)):  # 2: the stream feeds a pool
        rows = predict(inputs, trained / "best.pt", workers=workers, device="cpu", progress=False)
        assert {r["image"] for r in rows} == set(expected)
        for row in rows:
            twin = expected[row["image"]]
            assert row["level"] == twin["level"] and not row["error"]
            assert [row[f"p{g}"] for g in range(5)] == pytest.approx([twin[f"p{g}"] for g in range(5)], abs=1e-5)
