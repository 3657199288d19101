"""What a benchmark run measures and how long it may take; plain data so it pickles to workers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sightx.errors import SightXError

STAGES = ("shard", "load", "train", "sources", "serve")
EXECUTORS = ("pool", "dask-local")
RUNTIME_VARIANTS = ("torch", "onnxruntime", "openvino", "openvino-bf16", "onnxruntime-int8", "openvino-int8")
SERVE_MODELS = ("resnet18:160:256", "resnet50:512:512")  # arch:input px:field px; the first is the demo's
EYEPACS_IMAGES = 88_702  # Kaggle 2015: 35,126 train + 53,576 test originals


class BenchError(SightXError):
    """A problem the user must fix (bad input folder, unknown device); one line, no traceback."""


@dataclass(frozen=True)
class BenchOptions:
    """Defaults are sized so `all` finishes in under 10 minutes on a 2-core laptop."""

    stages: tuple[str, ...] = STAGES
    input: str | None = None  # raw folder; None = synthetic EyePACS camera mix
    images: int = 64
    workers: int = 2
    reps: int = 3
    warmup: bool = True
    shard_size: int | None = None  # None: enough shards for every worker
    size: int = 512
    quality: int = 95
    load_samples: int = 512
    arch: str = "resnet50"
    image_size: int = 512
    batch_size: int = 8
    train_steps: int = 1
    device: str = "auto"
    img2dataset: str | None = None  # executable; None = look on PATH and beside this Python
    work: str | None = None  # scratch folder; None = a temporary one, removed afterwards
    seed: int = 0
    camera_sizes: tuple[tuple[int, int], ...] | None = None  # None = the EyePACS resolution mix
    serve_models: tuple[str, ...] = SERVE_MODELS
    serve_clients: int = 8
    serve_load_requests: int = 40  # per latency / throughput measurement
    serve_requests: int = 1000  # in all, for the memory figure
    serve_max_s: float = 300.0  # per model: the memory run stops here if the requests take longer
    serve_photo: tuple[int, int] = (3888, 2592)  # a full-resolution EyePACS-size photo
    serve_slow_clients: int = 50  # connections sending a byte a second while a normal client's latency is measured
    serve_bomb_requests: int = 16  # requests of 8 20 MP speckled PNGs in the bomb burst (memory after it)
    # Runtimes compared per served model (sightx.bench.runtimes.VARIANTS); () skips the comparison.
    serve_runtimes: tuple[str, ...] = RUNTIME_VARIANTS
    serve_agreement_photos: int = 100  # photos each runtime's grades are compared with eager PyTorch's on
    serve_calibration_photos: int = 32  # photos the int8 model is calibrated (and the bench head fitted) on
    quick: bool = False
    executor: str = "pool"  # dask-local: the shard stage measures SightX on a Dask LocalCluster against its pool

    def __post_init__(self) -> None:
        unknown = set(self.stages) - set(STAGES)
        if unknown or not self.stages:
            raise BenchError(f"stages must be among {', '.join(STAGES)}, got {', '.join(self.stages) or 'none'}")
        if min(self.images, self.workers, self.reps, self.load_samples, self.batch_size, self.train_steps) < 1:
            raise BenchError("images, workers, reps, load samples, batch size and train steps must be >= 1")
        if self.executor not in EXECUTORS:
            raise BenchError(f"--executor must be one of {', '.join(EXECUTORS)}")
        if (
            min(self.serve_clients, self.serve_load_requests, self.serve_requests, self.serve_slow_clients, self.serve_bomb_requests) < 1
            or self.serve_max_s <= 0
        ):
            raise BenchError("serve clients, requests and seconds must be >= 1")
        if not self.serve_models:
            raise BenchError("the serve stage needs at least one --serve-model")
        for spec in self.serve_models:
            parse_model(spec)
        unknown_runtimes = set(self.serve_runtimes) - set(RUNTIME_VARIANTS)
        if unknown_runtimes:
            raise BenchError(f"--serve-runtimes must be among {', '.join(RUNTIME_VARIANTS)}, got {', '.join(sorted(unknown_runtimes))}")
        if min(self.serve_agreement_photos, self.serve_calibration_photos) < 1:
            raise BenchError("serve agreement and calibration photos must be >= 1")
        if self.images < 2 * self.workers:
            raise BenchError(f"--images must be at least twice --workers ({2 * self.workers}) to separate start-up")

    @classmethod
    def smoke(cls, **overrides: Any) -> BenchOptions:
        """--quick: tiny images, one repetition, small model; checks the plumbing, not the speed."""
        base: dict[str, Any] = dict(
            images=6,
            reps=1,
            warmup=False,
            load_samples=24,
            arch="resnet18",
            image_size=96,
            batch_size=4,
            train_steps=1,
            size=128,
            camera_sizes=((1024, 683),),
            serve_models=("resnet18:64:64",),
            serve_clients=2,
            serve_load_requests=4,
            serve_requests=24,
            serve_photo=(1024, 683),
            serve_slow_clients=8,
            serve_bomb_requests=1,
            serve_runtimes=("torch", "onnxruntime-int8"),
            serve_agreement_photos=4,
            serve_calibration_photos=5,
            quick=True,
        )
        return cls(**{**base, **overrides})

    def shard_size_for(self, workers: int, engine: str = "") -> int:
        """Four shards per worker by default, so img2dataset, which respawns its workers every 5
        shards, does not do so mid-run. SightX gets eight: a shard is its unit of work (the
        others work per image), and with a handful per worker the last one would leave the
        other workers idle, which a real run, with dozens per worker, never sees."""
        per_worker = 8 if engine.startswith("sightx") else 4
        return self.shard_size or max(1, self.images // (per_worker * workers))

    def worker_counts(self) -> tuple[int, ...]:
        return (1,) if self.workers == 1 else (1, self.workers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trained_checkpoint(spec: str) -> Path | None:
    """A --serve-model naming a trained checkpoint (a .pt from sightx-train) instead of a shape to build."""
    return Path(spec) if spec.endswith(".pt") else None


def parse_model(spec: str) -> tuple[str, int, int]:
    """'resnet18:160:256' -> (arch, model input px, preprocessed field px); a trained checkpoint's own."""
    path = trained_checkpoint(spec)
    if path is not None:
        from sightx.contracts import checkpoint

        try:
            state = checkpoint.load(path)
        except SightXError as e:
            raise BenchError(f"serve model {spec}: {e}") from None
        return state.arch, state.image_size, int(state.preprocess["size"])
    try:
        arch, image_size, field = spec.split(":")
        sizes = int(image_size), int(field)
    except ValueError:
        raise BenchError(f"serve model {spec!r} is not ARCH:INPUT_PX:FIELD_PX (e.g. resnet18:160:256) or a trained .pt") from None
    if min(sizes) < 32:
        raise BenchError(f"serve model {spec!r}: sizes must be at least 32 px")
    return arch, *sizes
