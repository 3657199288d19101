"""int8 ONNX: static quantisation (ONNX Runtime, QDQ, weights per channel, the final linear layer left in
float), its activations' ranges calibrated on photos through the grading path; the grades it gives are
compared with the float model's."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sightx.export.photos import ExportError


def quantize(float_path: Path, out: Path, calibration: list[torch.Tensor], input_name: str) -> None:
    """Write the int8 model of `float_path` to `out`, calibrated on `calibration` (normalised (1, 3, S, S) inputs)."""
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise ExportError("--quantize needs onnxruntime: pip install 'sightx[export]'") from None
    if not calibration:
        raise ExportError("--quantize needs photos to calibrate on, and none could be read")

    class Reader(CalibrationDataReader):
        """One photo at a time (CalibStridedMinMax 1): each photo's ranges are merged before the next runs,
        so memory holds one photo's activations, not all of them (ResNet50 at 512 px: ~0.5 GB a photo)."""

        def __init__(self) -> None:
            self.inputs = [x.numpy().astype(np.float32) for x in calibration]
            self.set_range(0, len(self.inputs))

        def __len__(self) -> int:
            return len(self.inputs)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.batches = iter({input_name: x} for x in self.inputs[start_index:end_index])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="sightx-quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        # The final linear layer stays in float: it is a sliver of the time, and the grade is read off its outputs.
        import onnx

        head = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type in ("Gemm", "MatMul")][-1:]
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=head,
            extra_options={"CalibStridedMinMax": 1},
        )
