"""Where a model runs: PyTorch, ONNX Runtime or OpenVINO, behind one call (normalised float NCHW in, raw outputs out).

`open_model` reads what the user passed as a checkpoint: a sightx-train `.pt`, an exported `.onnx`
(sightx-export --format onnx), or a model folder (`--format hub`, or `hf-hub:owner/name` online), and
picks the runtime: `auto` is the fastest installed one that can run that file on that device (PyTorch
for a .pt or a folder; for an .onnx on a CPU OpenVINO, then ONNX Runtime, as README's bench measured;
ONNX Runtime on CUDA). Everything after the model call (the head, thresholds, warnings) is the grader's,
the same whatever runs the model.

PyTorch runs with the batch-norm layers folded into the convolutions before them, channels-last on
CPU and CUDA, under `inference_mode`; ONNX Runtime and OpenVINO use the threads PyTorch had at import
(one per core unless OMP_NUM_THREADS says otherwise) while PyTorch, left with the normalisation and the
head, drops to one thread; they run in float32 (OpenVINO's default on CPUs with bf16 would move
probabilities by up to 1e-2), and ONNX Runtime's idle threads sleep instead of spinning.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sightx.contracts import checkpoint as ckpt
from sightx.contracts import exported
from sightx.errors import SightXError, one_line
from sightx.models.factory import autocast, autocast_dtype, build_model, pick_device
from sightx.models.timm_backbones import ArchError

# openvino-bf16: OpenVINO computing in bfloat16 where the CPU has bf16 instructions; never chosen by `auto`,
# since it moves probabilities by about 0.01 (the others agree with PyTorch within 1e-4)
RUNTIMES = ("torch", "onnxruntime", "openvino", "openvino-bf16")
CHOICES = ("auto", *RUNTIMES)
CPU_ORDER = ("openvino", "onnxruntime")  # for an .onnx on a CPU, fastest first (README: bench, runtimes)
_PIP = {"onnxruntime": "onnxruntime", "openvino": "openvino", "openvino-bf16": "openvino"}
CORES = max(1, torch.get_num_threads())  # PyTorch's threads at import: one per core, or OMP_NUM_THREADS
_lowered = [False]


def _torch_threads(model_on_torch: bool) -> None:
    """When ONNX Runtime or OpenVINO runs the model, PyTorch only normalises and applies the head: one thread,
    so its idle OpenMP workers do not spin against the runtime's (with them, OpenVINO ran ResNet18 at 160 px
    7-14x slower on 2 cores); PyTorch gets its threads back when it runs a model again."""
    if not model_on_torch:
        torch.set_num_threads(1)
        _lowered[0] = True
    elif _lowered[0]:
        torch.set_num_threads(CORES)
        _lowered[0] = False


class RuntimeChoiceError(SightXError):
    """A runtime that is not installed, cannot run this file, or cannot run on this device."""


def installed(name: str) -> bool:
    """Whether runtime `name` can be imported here (torch always can)."""
    if name == "torch":
        return True
    try:
        return importlib.util.find_spec(_PIP.get(name, name)) is not None
    except (ImportError, ValueError):
        return False


class Runtime:
    """One model on one device: `__call__` maps a normalised float32 NCHW batch to the network's raw outputs."""

    name = ""
    module: nn.Module | None = None  # the PyTorch module, for Grad-CAM; None where another runtime runs the model

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def fold_batch_norms(model: nn.Module) -> int:
    """Fold each eval-mode BatchNorm2d into the Conv2d registered just before it (torchvision's conv, bn
    order: ResNet, EfficientNet), in place; the number folded. The caller checks the outputs are unchanged."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    previous: tuple[str, nn.Module] | None = None
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.BatchNorm2d) and previous is not None:
            conv_name, conv = previous
            if isinstance(conv, nn.Conv2d) and conv.out_channels == module.num_features and module.track_running_stats:
                _replace(model, conv_name, fuse_conv_bn_eval(conv, module))
                _replace(model, name, nn.Identity())
                folded += 1
        previous = (name, module)
    return folded


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(self, model: nn.Module, device: torch.device, fast: bool = True) -> None:
        super().__init__(device)
        _torch_threads(True)
        model = model.to(device).eval()
        self.channels_last = fast and device.type in ("cpu", "cuda")
        if fast:
            model = _folded(model)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.module = model
        self.amp = autocast_dtype(device, "auto")

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        assert self.module is not None
        with autocast(self.device, self.amp):
            return self.module(x)


def _folded(model: nn.Module, size: int = 64) -> nn.Module:
    """The model with its batch norms folded if that leaves its outputs as they were, else the model."""
    folded = copy.deepcopy(model)
    if not fold_batch_norms(folded):
        return model
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)).to(next(model.parameters()).device)
    with torch.inference_mode():
        before, after = model(x).float(), folded(x).float()
    tolerance = 1e-3 * max(1.0, float(before.abs().max()))
    return folded if float((before - after).abs().max()) <= tolerance else model


class OnnxRuntime(Runtime):
    name = "onnxruntime"

    def __init__(self, path: Path, device: torch.device) -> None:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = CORES
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Idle threads sleep instead of spinning: the server's preprocessing threads share these cores
        # (spinning made ResNet18 at 8 clients 3.7x slower than PyTorch in the bench).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # parsed as ONNX but not runnable: unknown operators, broken graph
            raise ckpt.CheckpointError(f"{path}: ONNX Runtime cannot load it ({one_line(str(e))[:200]})") from None
        on_cuda = self.session.get_providers()[0] == "CUDAExecutionProvider"
        super().__init__(torch.device("cuda") if on_cuda else torch.device("cpu"))
        self.input = self.session.get_inputs()[0].name
        _torch_threads(False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (out, *_) = self.session.run(None, {self.input: x.detach().cpu().float().numpy()})
        return torch.from_numpy(out)


class OpenVinoRuntime(Runtime):
    name = "openvino"

    def __init__(self, path: Path, device: torch.device, precision: str = "f32") -> None:
        import openvino as ov

        super().__init__(torch.device("cpu"))
        self.name = "openvino" if precision == "f32" else f"openvino-{precision}"
        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": CORES}
        try:
            compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as e:
            raise ckpt.CheckpointError(f"{path}: OpenVINO cannot load it ({one_line(str(e))[:200]})") from None
        self.request = compiled.create_infer_request()
        _torch_threads(False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.request.infer({0: x.detach().cpu().float().numpy()})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())


def resolve_hub(source: str) -> Path:
    """`hf-hub:owner/name[@revision]` -> the folder huggingface_hub downloads it to (online); a path as it is."""
    if not source.startswith(exported.HF_PREFIX):
        return Path(source)
    repo, _, revision = source[len(exported.HF_PREFIX) :].partition("@")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        need = "pip install 'sightx[hub]'"
        raise ckpt.CheckpointError(f"{source}: loading from the Hugging Face hub needs huggingface_hub: {need}") from None
    try:
        patterns = [exported.CONFIG, exported.WEIGHTS, exported.CARD]
        return Path(snapshot_download(repo, revision=revision or None, allow_patterns=patterns))
    except Exception as e:  # offline, no such repository, no access
        raise ckpt.CheckpointError(f"{source}: cannot download it ({type(e).__name__}: {one_line(str(e))[:200]})") from None


def read_model(source: str | Path) -> ckpt.Checkpoint:
    """The checkpoint a .pt, a model folder or an .onnx holds (an .onnx: its facts, no weights)."""
    text = str(source)
    if exported.is_hub(text):
        return exported.load_hub(resolve_hub(text))
    if text.endswith(".onnx"):
        return exported.read_onnx(Path(text))[0]
    return ckpt.load(Path(text))


def choose(runtime: str, onnx: bool, device: torch.device) -> str:
    """The runtime that will run a model file (an .onnx or not) on `device`; RuntimeChoiceError (one line) if none can."""
    if runtime not in CHOICES:
        raise RuntimeChoiceError(f"runtime {runtime!r} is not one of {', '.join(CHOICES)}")
    if not onnx:
        if runtime in ("auto", "torch"):
            return "torch"
        raise RuntimeChoiceError(
            f"--runtime {runtime} runs an exported model: sightx-export CHECKPOINT --format onnx --out model.onnx, "
            "then --checkpoint model.onnx"
        )
    if runtime == "torch":
        raise RuntimeChoiceError("--runtime torch needs the PyTorch weights: pass the .pt or the hub folder (sightx-export --format hub)")
    if runtime == "auto":
        order = ("onnxruntime", "openvino") if device.type == "cuda" else CPU_ORDER
        found = [name for name in order if installed(name)]
        if not found:
            raise RuntimeChoiceError("grading an .onnx needs ONNX Runtime or OpenVINO: pip install 'sightx[export]'")
        return found[0]
    if not installed(runtime):
        raise RuntimeChoiceError(f"--runtime {runtime} is not installed: pip install {_PIP[runtime]}")
    if runtime.startswith("openvino") and device.type != "cpu":
        raise RuntimeChoiceError(f"--runtime {runtime} runs on the CPU here, not {device}: use --device cpu")
    if runtime == "openvino-bf16" and not cpu_has_bf16():
        raise RuntimeChoiceError("--runtime openvino-bf16 needs a CPU with bf16 instructions (AVX-512 BF16 or AMX): use --runtime openvino")
    return runtime


def cpu_has_bf16() -> bool:
    """Whether OpenVINO can compute in bfloat16 on this CPU (without it, it would quietly run float32)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def open_model(source: str | Path, device: str = "auto", runtime: str = "auto", fast: bool = True) -> tuple[ckpt.Checkpoint, Runtime]:
    """The checkpoint's facts and a runtime ready to run its model. `fast=False`: PyTorch as it comes (the bench's eager baseline)."""
    state = read_model(source)
    where = pick_device(device)
    onnx = str(source).endswith(".onnx") and not exported.is_hub(source)
    name = choose(runtime, onnx, where)
    facts = state if not state.model else _without_weights(state)
    if name == "onnxruntime":
        return facts, OnnxRuntime(Path(source), where)
    if name.startswith("openvino"):
        return facts, OpenVinoRuntime(Path(source), where, "bf16" if name == "openvino-bf16" else "f32")
    try:
        model = build_model(state.arch, state.head, image_size=state.image_size)  # a ViT's position embedding is sized by it
    except ArchError as e:  # an edited or foreign checkpoint's arch: the file is what is wrong
        raise ckpt.CheckpointError(f"{source}: {str(e).replace('--arch ', 'its arch ', 1)}") from None
    try:
        model.load_state_dict(state.model)
    except RuntimeError:
        raise ckpt.CheckpointError(f"{source}: its weights do not fit a {state.arch} with a {state.head} head") from None
    return facts, TorchRuntime(model, where, fast)


def _without_weights(state: ckpt.Checkpoint) -> ckpt.Checkpoint:
    import dataclasses

    return dataclasses.replace(state, model={}, training={})


def describe(runtime: Runtime) -> dict[str, Any]:
    return {"runtime": runtime.name, "device": str(runtime.device)}
