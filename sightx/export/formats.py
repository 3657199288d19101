"""The three exports of a checkpoint (a .pt or a hub folder): ONNX (float, optionally int8), a torch.export
program (.pt2) and a hub folder. Each is written beside its final name, checked against the checkpoint's
own PyTorch model on generated inputs and photos, and moved into place only if it matches."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sightx.contracts import exported
from sightx.evaluation import metrics
from sightx.export import verify
from sightx.export.card import model_card
from sightx.export.photos import ExportError, generated_inputs, model_inputs, photo_bytes, shard_inputs
from sightx.inference import runtimes
from sightx.inference.grader import Grader

FORMATS = ("onnx", "torch-export", "hub")
INPUT, OUTPUT = "image", "logits"
CALIBRATION = 16  # photos the int8 model's ranges are calibrated on; the others measure its agreement


def _temporary(out: Path) -> Path:
    return out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")  # torch.export wants its .pt2


def _check(grader: Grader, run: Callable[[torch.Tensor], torch.Tensor], inputs: list[torch.Tensor], what: str) -> float:
    reference = verify.head_outputs(grader, grader.runtime, inputs)
    difference = verify.max_difference(reference, verify.head_outputs(grader, run, inputs))
    if not difference <= verify.TOLERANCE:
        raise ExportError(f"{what} does not match PyTorch: outputs differ by up to {difference:.2e} (limit {verify.TOLERANCE:.0e})")
    return difference


def _example(inputs: list[torch.Tensor]) -> torch.Tensor:
    """A batch of more than one: traced at batch 1, the exporters would fix the batch size."""
    return next(x for x in inputs if len(x) > 1)


def _batch_dim() -> Any:
    return ({0: torch.export.Dim("batch", min=1, max=4096)},)


def _require(fmt: str) -> None:
    """The packages a format needs, before any work: one line naming the install."""
    needs = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "hub": ("safetensors",)}.get(fmt, ())
    missing = [name for name in needs if not runtimes.installed(name)]
    if missing:
        raise ExportError(f"--format {fmt} needs {', '.join(needs)}: pip install 'sightx[export]' (missing: {', '.join(missing)})")


def to_onnx(grader: Grader, out: Path, inputs: list[torch.Tensor]) -> float:
    """The float ONNX model with dynamic batch and the checkpoint's facts as metadata; its largest difference from PyTorch."""
    import onnx

    assert grader.model is not None
    example = _example(inputs)
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            grader.model, (example,), dynamo=True, dynamic_shapes=_batch_dim(), input_names=[INPUT], output_names=[OUTPUT], verbose=False
        )
    if program is None:
        raise ExportError("torch.onnx.export returned no model")
    proto = program.model_proto
    onnx.helper.set_model_props(proto, exported.metadata(grader.checkpoint))
    tmp = _temporary(out)
    tmp.write_bytes(proto.SerializeToString())
    try:
        difference = _check(grader, runtimes.OnnxRuntime(tmp, torch.device("cpu")), inputs, str(out))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    return difference


def to_int8(
    grader: Grader,
    float_path: Path,
    out: Path,
    calibration: list[torch.Tensor],
    held_out: list[torch.Tensor],
    grades: list[int] | None = None,
) -> dict[str, Any]:
    """The int8 model of `float_path`, calibrated on `calibration`; how often its grades equal the float model's on
    `held_out`, and with their true `grades` the QWK each model scores there."""
    import onnx

    from sightx.export.quantize import quantize

    quantize(float_path, out, calibration, INPUT)
    proto = onnx.load_model(str(out))
    onnx.helper.set_model_props(proto, exported.metadata(grader.checkpoint))
    out.write_bytes(proto.SerializeToString())
    float_model, int8_model = runtimes.OnnxRuntime(float_path, torch.device("cpu")), runtimes.OnnxRuntime(out, torch.device("cpu"))
    a = verify.head_outputs(grader, float_model, held_out)
    b = verify.head_outputs(grader, int8_model, held_out)
    float_grades, int8_grades = verify.grades(grader, a), verify.grades(grader, b)
    same = float_grades == int8_grades
    report = {
        "out": str(out),
        "calibration_photos": len(calibration),
        "agreement_photos": len(held_out),
        "grade_agreement": round(float(same.mean()), 4) if same.size else None,
        "max_difference": round(verify.max_difference(a, b), 6),
        "mb": round(out.stat().st_size / 1e6, 1),
    }
    if grades is not None and metrics.kappa_is_defined(grades, float_grades) and metrics.kappa_is_defined(grades, int8_grades):
        qwk = {name: round(metrics.quadratic_weighted_kappa(grades, g), 4) for name, g in (("float", float_grades), ("int8", int8_grades))}
        report["qwk"] = {**qwk, "change": round(qwk["int8"] - qwk["float"], 4)}
    return report


def to_torch_export(grader: Grader, out: Path, inputs: list[torch.Tensor]) -> float:
    """A torch.export program (.pt2) with the checkpoint's facts in `sightx.json`; its largest difference from PyTorch."""
    assert grader.model is not None
    program = torch.export.export(grader.model, (_example(inputs),), dynamic_shapes=_batch_dim())
    facts = json.dumps(exported.facts(grader.checkpoint))
    tmp = _temporary(out)
    torch.export.save(program, str(tmp), extra_files={"sightx.json": facts})
    try:
        loaded = torch.export.load(str(tmp))  # the file just written by this process
        difference = _check(grader, loaded.module(), inputs, str(out))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    return difference


def to_hub(grader: Grader, source: str, out: Path, inputs: list[torch.Tensor], license: str | None, dataset: str | None) -> float:
    """config.json, model.safetensors, README.md; loaded back as SightX loads it and checked."""
    state = runtimes.read_model(source)  # with its weights
    exported.save_hub(out, state, model_card(state, license, dataset))
    back = Grader(out, "cpu", task=state.task, runtime="torch", fast=False)
    return _check(grader, back.runtime, inputs, str(out))


def export(
    source: str,
    fmt: str,
    out: Path,
    *,
    quantize: bool = False,
    photos: Path | None = None,
    shards: Path | None = None,
    n_photos: int = 48,
    license: str | None = None,
    dataset: str | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Export `source` (a .pt, a hub folder or hf-hub:) as `fmt` to `out`; a report of what was written and checked.
    Checked (and int8 calibrated) on `photos`, or on a shard set's samples: its val split checked, with the QWK
    of float and int8 there, its train split calibrating; otherwise on synthetic photos."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if str(source).endswith(".onnx"):
        raise ExportError(f"{source} is already exported: export from the .pt checkpoint or the hub folder")
    if quantize and fmt != "onnx":
        raise ExportError("--quantize makes an int8 ONNX model: use it with --format onnx")
    if photos is not None and shards is not None:
        raise ExportError("check on --photos or on --shards, not both")
    _require(fmt)
    start = time.perf_counter()
    state = runtimes.read_model(source)
    grader = Grader(source, "cpu", task=state.task, runtime="torch", fast=False)  # the reference: eager, as trained
    grades: list[int] | None = None
    if shards is not None:
        real, grades = shard_inputs(grader, shards, "val", n_photos)
        calibration = shard_inputs(grader, shards, "train", CALIBRATION)[0] if quantize else []
        if not real or (quantize and not calibration):
            raise ExportError(f"--shards {shards}: needs labelled val samples, --quantize train ones (sightx-shard --val-fraction)")
        held_out = real
    else:
        n = max(n_photos, CALIBRATION + 1) if quantize else n_photos
        real = model_inputs(grader, photo_bytes(photos, n)) if n else []
        calibration, held_out = real[:CALIBRATION], real[CALIBRATION:] or real
    inputs = generated_inputs(grader.checkpoint.image_size) + real
    log(f"checking against PyTorch on {len(inputs) - len(real)} generated batches and {len(real)} photos")
    report: dict[str, Any] = {"source": str(source), "format": fmt, "out": str(out), "photos": len(real)}
    if fmt == "onnx":
        report["max_difference"] = to_onnx(grader, out, inputs)
        if quantize:
            report["int8"] = to_int8(grader, out, out.with_name(out.stem + ".int8.onnx"), calibration, held_out, grades)
    elif fmt == "torch-export":
        report["max_difference"] = to_torch_export(grader, out, inputs)
    else:
        report["max_difference"] = to_hub(grader, str(source), out, inputs, license, dataset)
    report["elapsed_s"] = round(time.perf_counter() - start, 1)
    return report
