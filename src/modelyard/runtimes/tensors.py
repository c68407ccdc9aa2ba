"""Tensor descriptions in Open Inference Protocol terms, and their numpy element types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# BF16 has no numpy type; float32 carries it and the torch runtimes convert on the device.
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "FP32": np.dtype(np.float32),
    "FP16": np.dtype(np.float16),
    "BF16": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "BOOL": np.dtype(np.bool_),
    "BYTES": np.dtype(object),
}
"""The numpy element type an input of each Open Inference Protocol datatype is cast to."""

# Keyed by the dtype's name so that this table needs no torch import.
_TORCH_TO_OIP = {
    "float32": "FP32",
    "float16": "FP16",
    "bfloat16": "BF16",
    "float64": "FP64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "bool": "BOOL",
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a runtime, as Open Inference Protocol metadata shows it.

    ``shape`` has -1 for a dimension that varies; the first dimension is the batch.
    ``datatype`` and ``shape`` are ``None`` only where the format records none (a
    TorchScript module without a recorded preprocessing, an ONNX tensor without a shape);
    such inputs are passed through and the model itself checks them.

    >>> TensorSpec("input", "FP32", [-1, 64])
    TensorSpec(name='input', datatype='FP32', shape=[-1, 64])
    """

    name: str
    datatype: str | None
    shape: list[int] | None

    def describe(self) -> str:
        """``'input' FP32 [-1, 64]``, for messages."""
        return f"{self.name!r} {self.datatype or 'any type'} {self.shape or 'any shape'}"


def torch_datatype_name(dtype_name: str) -> str | None:
    """The datatype of a torch dtype given by name (``"float32"`` → ``FP32``), or None."""
    return _TORCH_TO_OIP.get(dtype_name.removeprefix("torch."))


def specs_from_signature(entries: Sequence[Mapping[str, Any]] | None) -> list[TensorSpec]:
    """The tensors of a registry signature's ``inputs`` or ``outputs`` list."""
    specs = []
    for entry in entries or []:
        shape = entry.get("shape")
        specs.append(
            TensorSpec(
                name=str(entry["name"]),
                datatype=entry.get("datatype"),
                shape=[int(d) for d in shape] if shape is not None else None,
            )
        )
    return specs


def with_variable_batch(spec: TensorSpec) -> TensorSpec:
    """``spec`` with its first dimension marked variable."""
    if not spec.shape:
        return spec
    return TensorSpec(spec.name, spec.datatype, [-1, *spec.shape[1:]])
