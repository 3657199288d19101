"""Compute: the torch build, the devices present, and one training step of the training model on
each device with the mixed precision training would use there (via `sightx.models.factory`), timed.

A GPU that torch cannot use (a broken driver, a CPU-only wheel on a GPU machine) is a fail with
torch's own reason, found here rather than when `sightx-train` quietly falls back to the CPU."""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sightx.doctor import env
from sightx.doctor.check import FAIL, OK, WARN, Check

SECTION = "compute"


@dataclass(frozen=True)
class StepSize:
    """What the timed step runs: small on a CPU (a smoke test), the training default on a GPU."""

    arch: str
    image_size: int
    batch: int


CPU_STEP = StepSize("resnet18", 128, 8)
GPU_STEP = StepSize("resnet50", 512, 16)
QUICK_STEP = StepSize("resnet18", 32, 4)


def checks(quick: bool = False) -> Iterator[Check]:
    try:
        import torch
    except Exception as e:
        yield Check(SECTION, "torch", FAIL, f"cannot import torch ({type(e).__name__}: {e})".splitlines()[0], env.install_fix())
        return
    yield _build(torch)
    devices, problem = _devices(torch)
    if problem is not None:
        yield problem
    gpus = [d for d in devices if d != "cpu"]
    if gpus:
        names = [torch.cuda.get_device_name(int(d[5:])) if d.startswith("cuda") else "Apple GPU" for d in gpus]
        yield Check(SECTION, "devices", OK, ", ".join(f"{d} ({n})" for d, n in zip(gpus, names)) + ", cpu", data={"devices": devices})
    else:
        yield Check(
            SECTION,
            "devices",
            WARN,
            "no GPU: sightx-train runs on the CPU (ResNet50 at 512 px: about 1.4 images/s on 2 cores)",
            "train on a CUDA or Apple-silicon machine (shard and explore run well here)",
            {"devices": devices},
        )
    for device in devices:
        size = QUICK_STEP if quick else (CPU_STEP if device == "cpu" else GPU_STEP)
        yield _step(torch, device, size)


def _build(torch: Any) -> Check:
    cuda = torch.version.cuda
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_built())
    kind = f"CUDA {cuda} build" if cuda else ("ROCm build" if getattr(torch.version, "hip", None) else "CPU-only build")
    kind += ", MPS built in" if mps else ""
    return Check(
        SECTION, "torch", OK, f"torch {torch.__version__}: {kind}", data={"version": torch.__version__, "cuda": cuda, "mps_built": mps}
    )


def _nvidia_present() -> bool:
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia").exists() or shutil.which("nvidia-smi") is not None


def _devices(torch: Any) -> tuple[list[str], Check | None]:
    """The devices to try a step on, and a fail line when a GPU is there but torch cannot use it."""
    devices = []
    problem = None
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            devices.append(f"cuda:{i}")
    elif _nvidia_present():
        reason = "no CUDA in this torch build (a CPU-only wheel)"
        if torch.version.cuda:
            try:
                torch.cuda.init()
                reason = "torch.cuda.is_available() is False"
            except Exception as e:  # torch's own reason: driver too old, no device visible, ...
                reason = f"{e}".strip().splitlines()[0]
        problem = Check(
            SECTION,
            "cuda",
            FAIL,
            f"an NVIDIA GPU is present but torch cannot use it: {reason}",
            "nvidia-smi (driver working?); then the CUDA wheel for it: https://pytorch.org/get-started/locally/",
        )
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    devices.append("cpu")
    return devices, problem


def _step(torch: Any, name: str, size: StepSize) -> Check:
    """One warm-up and one timed training step (forward, loss, backward, optimiser) on `name`."""
    from sightx.train.config import TrainConfig
    from sightx.train.loop import train_step
    from sightx.train.trainer import build_step

    device = torch.device(name)
    _, ctx = build_step(TrainConfig(shards="", arch=size.arch, head="classify"), device)  # as training builds it
    amp = ctx.amp
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (size.batch, 3, size.image_size, size.image_size), dtype=torch.uint8, generator=generator)
    grades = torch.arange(size.batch) % 5
    weights = torch.ones(size.batch)
    label = f"{size.arch} {size.image_size}px batch {size.batch}, amp {str(amp).replace('torch.', '') if amp else 'off'}"
    data: dict[str, Any] = {"device": name, "arch": size.arch, "image_size": size.image_size, "batch": size.batch, "amp": str(amp)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            train_step(ctx, images, grades, weights)  # warm-up: kernels chosen, memory allocated
            _sync(torch, device)
            start = time.perf_counter()
            loss = train_step(ctx, images, grades, weights)
            _sync(torch, device)
            elapsed = time.perf_counter() - start
        except Exception as e:
            text = f"{e}".strip().splitlines()[0] if str(e).strip() else type(e).__name__
            fix = (
                "export PYTORCH_ENABLE_MPS_FALLBACK=1"
                if "PYTORCH_ENABLE_MPS_FALLBACK" in str(e)
                else "sightx-train --device cpu (and report the error)"
            )
            return Check(SECTION, name, FAIL, f"training step failed on {name} ({label}): {text}", fix, data)
    fallbacks = [str(w.message) for w in caught if "fall back" in str(w.message).lower()]
    rate = size.batch / elapsed
    data.update(images_per_s=round(rate, 1), loss=float(loss))
    detail = f"forward+backward {label}: {rate:.1f} images/s"
    if not torch.isfinite(loss):
        return Check(SECTION, name, FAIL, f"{detail}, but the loss is {float(loss)}", "sightx-train --amp off", data)
    if fallbacks:
        return Check(
            SECTION, name, WARN, f"{detail}; ops fall back to the CPU: {fallbacks[0][:120]}", "export PYTORCH_ENABLE_MPS_FALLBACK=1", data
        )
    return Check(SECTION, name, OK, detail, data=data)


def _sync(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
