"""Serve stage, runtimes: one model through every runtime in one run, against eager PyTorch.

The model's checkpoint (an untrained one given a fitted head, see fit_head, or a trained one as it is) is
exported (sightx-export --format onnx --quantize: float and int8, calibrated on synthetic photos of one seed).
Then, for each runtime variant (PyTorch as SightX runs it, ONNX Runtime and OpenVINO, float and int8):
- the model call alone, photos/s at batches of 1 and 8 (after warm-up calls, the fastest of repetitions),
  against eager PyTorch (the model as torchvision builds it: no folding, no channels-last) in the same run;
- its grades on bench photos (synthetic, of another seed than the calibration's) against eager PyTorch's;
- the real sightx-serve process with `--runtime`, at 1 client and N clients: photos/s, p50/p95.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sightx.bench.options import BenchOptions
from sightx.bench.stats import sig

EAGER = "torch-eager"
_WARM = 2
_BATCH = 8


def _file(variant: str, files: dict[str, Path]) -> tuple[Path, str]:
    """The model file and --runtime of a variant: an -int8 variant runs the int8 .onnx, the others name a --runtime."""
    if variant == "torch":
        return files["checkpoint"], "torch"
    runtime, _, precision = variant.partition("-")
    return (files["int8"], runtime) if precision == "int8" else (files["onnx"], variant)


def installed(variant: str) -> bool:
    from sightx.inference.runtimes import installed as runtime_installed

    return runtime_installed(variant.partition("-")[0])


def model_speed(grader: Any, batch: int, reps: int) -> float:
    """Photos/s of the model call (normalisation, model, head) at `batch`: the fastest of `reps` timed calls after
    warm-up (on a shared machine another process only ever slows a call, and a descheduled thread of a parallel
    region can slow one tenfold)."""
    size = grader.transform.size
    tensors = [torch.zeros((3, size, size), dtype=torch.uint8)] * batch
    for _ in range(_WARM):
        grader.outputs(tensors)
    timings = []
    for _ in range(reps):
        start = time.perf_counter()
        grader.outputs(tensors)
        timings.append(time.perf_counter() - start)
    return sig(batch / min(timings))


def fit_head(checkpoint: Path, out: Path, n: int, steps: int = 300, decay: float = 0.1) -> Path:
    """The checkpoint with batch-norm statistics measured on n synthetic photos (seed 0: the calibration photos)
    and its final layer fitted to their grades, so its grades spread over the scale as a trained model's do; an
    untrained head gives nearly every photo the same grade, and agreement between runtimes would mean nothing."""
    from sightx.contracts import checkpoint as ckpt
    from sightx.export.photos import model_inputs, photo_bytes
    from sightx.inference.grader import Grader

    grader = Grader(checkpoint, "cpu", runtime="torch", fast=False)
    model = grader.model
    assert model is not None
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    inputs = model_inputs(grader, photo_bytes(None, n, seed=0))
    _renormalise(model, inputs)
    features: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda _m, args, _out: features.append(args[0].detach().clone()))
    with torch.inference_mode():
        for x in inputs:
            model(x)
    hook.remove()
    x, grades = torch.cat(features), torch.arange(len(features)) % 5
    x = x.clone()
    layer = torch.nn.Linear(x.shape[1], last.out_features)
    optimiser = torch.optim.Adam(layer.parameters(), lr=1e-2)
    scale = x.std().clamp_min(1e-6)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(x / scale), grades) + decay * layer.weight.square().sum()
        loss.backward()
        optimiser.step()
    state = ckpt.load(checkpoint)
    state.model = {k: v.detach().clone() for k, v in model.state_dict().items()}  # the re-estimated batch-norm statistics
    name = next(k for k, m in model.named_modules() if m is last)
    state.model[f"{name}.weight"] = (layer.weight.detach() / scale).contiguous()
    state.model[f"{name}.bias"] = layer.bias.detach().clone()
    ckpt.save(out, state)
    return out


def _renormalise(model: torch.nn.Module, inputs: list[torch.Tensor]) -> None:
    """Batch-norm statistics measured on photos, as training leaves them: an untrained network's (mean 0,
    variance 1) let activations grow layer after layer until one component swamps what tells photos apart."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch
        m.train()
    with torch.no_grad():
        for i in range(0, len(inputs) - 1, _BATCH):
            model(torch.cat(inputs[i : i + _BATCH]))
    model.eval()


def _grades(grader: Any, tensors: list[torch.Tensor]) -> np.ndarray:
    outputs = np.concatenate([grader.outputs(tensors[i : i + _BATCH]) for i in range(0, len(tensors), _BATCH)])
    return np.asarray(grader.head.grades(outputs, grader.thresholds))


def compare(
    opts: BenchOptions, spec: str, checkpoint: Path, photo: bytes, work: Path, log: Callable[[str], None], fit: bool = True
) -> dict[str, Any]:
    """Every installed variant of `opts.serve_runtimes` for the model in `checkpoint` (`fit`: an untrained one,
    whose head fit_head fits first)."""
    from sightx.bench.serve import Load, server
    from sightx.export.formats import export
    from sightx.export.photos import photo_bytes
    from sightx.inference.grader import Grader
    from sightx.inference.runtimes import RuntimeChoiceError

    if fit:
        checkpoint = fit_head(checkpoint, work / f"{checkpoint.stem}-fitted.pt", opts.serve_calibration_photos)
    onnx = work / f"{checkpoint.stem}.onnx"
    report = export(str(checkpoint), "onnx", onnx, quantize=True, n_photos=opts.serve_calibration_photos + 1)
    files = {"checkpoint": checkpoint, "onnx": onnx, "int8": Path(report["int8"]["out"])}
    eager = Grader(checkpoint, opts.device, runtime="torch", fast=False)
    tensors = []
    for data in photo_bytes(None, opts.serve_agreement_photos, seed=1):
        tensors.append(eager.tensor(eager.prepare(data).jpeg))
    reference = _grades(eager, tensors)
    reps = max(5, opts.reps * 3)

    def speeds(grader: Any) -> dict[str, float]:
        return {"batch_1": model_speed(grader, 1, reps), f"batch_{_BATCH}": model_speed(grader, _BATCH, max(2, opts.reps))}

    base = speeds(eager)
    result: dict[str, Any] = {
        "photos": len(tensors),
        "trained": not fit,
        "calibration_photos": report["int8"]["calibration_photos"],
        "export_max_difference": report["max_difference"],
        EAGER: {"model": base},
        "variants": {},
    }
    log(f"serve  {spec} eager PyTorch: {base['batch_1']} photos/s at batch 1, {base[f'batch_{_BATCH}']} at {_BATCH}")
    for variant in opts.serve_runtimes:
        if not installed(variant):
            result["variants"][variant] = {"error": "not installed"}
            continue
        path, runtime = _file(variant, files)
        try:
            grader = Grader(path, opts.device, runtime=runtime)
        except RuntimeChoiceError as e:  # e.g. openvino-bf16 on a CPU without bf16 instructions
            result["variants"][variant] = {"error": str(e)}
            continue
        speed = speeds(grader)
        row: dict[str, Any] = {
            "file": path.name,
            "runtime": runtime,
            "model": speed,
            "x_eager_batch_1": sig(speed["batch_1"] / base["batch_1"], 3),
            f"x_eager_batch_{_BATCH}": sig(speed[f"batch_{_BATCH}"] / base[f"batch_{_BATCH}"], 3),
            "grade_agreement": round(float((_grades(grader, tensors) == reference).mean()), 4),
        }
        del grader
        with server(path, opts.device, _BATCH, opts.workers, work / f"serve-{variant}.log", runtime=runtime) as (url, _):
            load = Load(url, photo)
            try:
                load.run(2, 1)
                row["one_client"] = load.run(opts.serve_load_requests, 1)
                row["n_clients"] = load.run(opts.serve_load_requests * 2, opts.serve_clients)
            finally:
                load.close()
        log(
            f"serve  {spec} {variant}: model {row['x_eager_batch_1']}x eager at batch 1, same grade on {row['grade_agreement']:.1%}; "
            f"server {row['one_client']['photos_per_s']} photos/s at 1 client, {row['n_clients']['photos_per_s']} at {opts.serve_clients}"
        )
        result["variants"][variant] = row
    result["targets"] = _targets(result["variants"])
    return result


def _targets(variants: dict[str, Any]) -> dict[str, Any]:
    """The fastest float and the fastest int8 variant at batch 1, with their grade agreement."""
    out: dict[str, Any] = {}
    floats = ("torch", "onnxruntime", "openvino", "openvino-bf16")
    for kind, names in (("float", floats), ("int8", ("onnxruntime-int8", "openvino-int8"))):
        measured = [(variants[n]["x_eager_batch_1"], n) for n in names if n in variants and "error" not in variants[n]]
        if measured:
            speedup, name = max(measured)
            out[kind] = {"variant": name, "x_eager": speedup, "grade_agreement": variants[name]["grade_agreement"]}
    return out


def rows(s: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:
    """The runtimes table of the serve stage: headers, rows and notes (sightx.bench.report lays it out)."""
    n = s["clients"]
    headers = [
        "model",
        "runtime",
        "model photos/s, batch 1 (x eager)",
        f"batch {_BATCH} (x eager)",
        "same grade as eager",
        "1 client photos/s, p50 / p95 ms",
        f"{n} clients photos/s, p50 / p95 ms",
    ]
    out = []
    for spec, m in s["models"].items():
        r = m.get("runtimes")
        if not r:
            continue
        eager = r[EAGER]["model"]
        out.append([spec, "PyTorch eager (baseline)", f"{eager['batch_1']:g}", f"{eager[f'batch_{_BATCH}']:g}", "-", "-", "-"])
        for variant, v in r["variants"].items():
            if "error" in v:
                out.append([spec, variant, v["error"], "", "", "", ""])
                continue
            one, many = v["one_client"], v["n_clients"]
            out.append(
                [
                    spec,
                    variant,
                    f"{v['model']['batch_1']:g} ({v['x_eager_batch_1']:g}x)",
                    f"{v['model'][f'batch_{_BATCH}']:g} ({v[f'x_eager_batch_{_BATCH}']:g}x)",
                    f"{v['grade_agreement']:.1%} of {r['photos']}",
                    f"{one['photos_per_s']:g}, {one['p50_ms']:g} / {one['p95_ms']:g}",
                    f"{many['photos_per_s']:g}, {many['p50_ms']:g} / {many['p95_ms']:g}",
                ]
            )
    notes = [
        "model photos/s = the model call alone (normalisation, network, head) in this process; eager = the torchvision model as"
        " built, NCHW, no folded batch norms; torch = SightX's PyTorch path (folded batch norms, channels-last, inference_mode).",
        "same grade = photos (synthetic, another seed than the int8 calibration's) graded as eager PyTorch grades them.",
        "1 client / N clients = the real sightx-serve --runtime ... process, one full-size photo per request (decode and"
        " preprocessing included); an untrained checkpoint's grades (a fitted head) may sit nearer to its thresholds than a"
        " trained model's, so its agreement is a proxy: name a trained best.pt as --serve-model for the real figure.",
    ]
    return headers, out, notes
