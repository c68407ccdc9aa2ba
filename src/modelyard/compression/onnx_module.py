"""An ONNX model on ONNX Runtime behind the ``nn.Module`` interface, for evaluation.

Evaluation, latency and reports take modules; this lets ONNX versions (uploaded, exported
or quantized by ONNX Runtime) go through the same code. It is for inference only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelyard.errors import InvalidInput

# Initializers ONNX Runtime's quantizer adds next to each quantized weight.
_QUANT_PARAM_SUFFIXES = ("_scale", "_zero_point")
_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


@dataclass(frozen=True)
class WeightStats:
    """What a model's weights hold: bytes, values and non-zero values."""

    weight_bytes: int
    params: int
    nonzero_params: int


class OnnxModule(nn.Module):
    """Runs a single-input, single-output ONNX file; ``forward`` takes and returns tensors."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        ort.disable_telemetry_events()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise InvalidInput(f"ONNX Runtime cannot load the model: {exc}") from exc
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise InvalidInput(
                f"the ONNX model has {len(inputs)} inputs and {len(outputs)} outputs; "
                "evaluation on a data set needs one of each"
            )
        self.input_name = inputs[0].name
        self.input_shape: list[Any] = list(inputs[0].shape)
        self.input_type = _NUMPY_TYPES.get(inputs[0].type, np.float32)
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().cpu().numpy().astype(self.input_type, copy=False)
        (out,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def weight_stats(self) -> WeightStats:
        """Bytes, values and non-zeros of the initializers (quantization scales aside)."""
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(self.path))
        total_bytes = params = nonzero = 0
        for tensor in model.graph.initializer:
            array = numpy_helper.to_array(tensor)
            total_bytes += array.nbytes
            if tensor.name.endswith(_QUANT_PARAM_SUFFIXES) or array.ndim == 0:
                continue
            if array.dtype.kind in "iu" and array.itemsize > 1:
                continue  # shapes and indices the exporter stores, not weights
            params += array.size
            nonzero += int(np.count_nonzero(array))
        return WeightStats(total_bytes, params, nonzero)
