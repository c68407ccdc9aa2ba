"""An ONNX model on ONNX Runtime, as a runtime."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard.errors import InvalidInput, Unavailable
from modelyard.runtimes.inputs import InputPipeline
from modelyard.runtimes.runtime import ModelRuntime
from modelyard.runtimes.tensors import TensorSpec

if TYPE_CHECKING:
    from modelyard.training.preprocess import Preprocessor

_ORT_TO_OIP = {
    "tensor(float)": "FP32",
    "tensor(float16)": "FP16",
    "tensor(bfloat16)": "BF16",
    "tensor(double)": "FP64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


class OnnxRuntime(ModelRuntime):
    """An ``onnxruntime.InferenceSession`` over the file at ``path``.

    ``device`` ``auto`` uses the CUDA execution provider when this ONNX Runtime build has
    it, else the CPU; ``cuda``/``cuda:N`` require it. The session's intra-op pool gets
    ``threads`` threads and runs one operator at a time (inter-op 1), since parallelism
    across requests comes from concurrent calls. ``InferenceSession.run`` is thread-safe.
    Tensor names and types are the graph's own.
    """

    def __init__(
        self,
        path: Path,
        *,
        device: str,
        threads: int,
        preprocessor: Preprocessor | None,
    ) -> None:
        import onnxruntime as ort

        providers, index = _providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Idle pool threads would otherwise spin for a while after every run, taking the
        # cores that torch, the server and other models in the process need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:
            raise InvalidInput(f"ONNX Runtime cannot load the model: {exc}") from exc
        inputs = [_spec(arg) for arg in session.get_inputs()]
        outputs = [_spec(arg) for arg in session.get_outputs()]
        for spec in inputs:
            if spec.datatype == "BF16":
                raise InvalidInput(
                    f"input {spec.name!r} is BF16, which ONNX Runtime cannot take from numpy"
                )
        on_cuda = session.get_providers()[0] == _CUDA
        super().__init__(
            name="onnxruntime",
            device=f"cuda:{index}" if on_cuda else "cpu",
            inputs=inputs,
            outputs=outputs,
            pipeline=InputPipeline(inputs, preprocessor),
        )
        self.session: Any = session
        self._output_names = [spec.name for spec in outputs]

    def forward(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's outputs for checked, preprocessed arrays."""
        session = self.session
        if session is None:
            raise Unavailable("the onnxruntime runtime is closed")
        feed = {spec.name: arrays[spec.name] for spec in self.inputs}
        values = session.run(self._output_names, feed)
        return {name: np.asarray(v) for name, v in zip(self._output_names, values, strict=True)}

    def _release(self) -> None:
        self.session = None


def _providers(device: str, available: list[str]) -> tuple[list[Any], int]:
    if device == "cpu":
        return [_CPU], 0
    if device == "auto":
        return ([(_CUDA, {"device_id": 0}), _CPU] if _CUDA in available else [_CPU]), 0
    kind, _, number = device.partition(":")
    if kind != "cuda" or not (number.isdigit() or number == ""):
        raise InvalidInput(f"device: {device!r} is not supported; use auto, cpu or cuda:N")
    if _CUDA not in available:
        raise InvalidInput(
            "device: this ONNX Runtime has no CUDAExecutionProvider (install onnxruntime-gpu)"
        )
    index = int(number or 0)
    return [(_CUDA, {"device_id": index}), _CPU], index


def _spec(arg: Any) -> TensorSpec:
    datatype = _ORT_TO_OIP.get(arg.type)
    if datatype is None:
        raise InvalidInput(
            f"tensor {arg.name!r} has ONNX type {arg.type}, which the Open Inference "
            "Protocol cannot carry"
        )
    shape = arg.shape
    dims = [d if isinstance(d, int) and d >= 0 else -1 for d in shape] if shape else None
    return TensorSpec(arg.name, datatype, dims)
