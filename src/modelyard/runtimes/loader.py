"""Which loader handles which registry format, and the one entry point to them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput, UnsupportedFormat
from modelyard.runtimes import keras, onnx, torch_catalog, torch_export, torchscript
from modelyard.runtimes.runtime import (
    FormatLoader,
    LoadOptions,
    ModelRuntime,
    Runtime,
    VersionArtifact,
)
from modelyard.runtimes.tensors import NUMPY_DTYPES, TensorSpec, torch_datatype_name

LOADERS: dict[str, FormatLoader] = {
    "safetensors": torch_catalog.LOADER,
    "torchscript": torchscript.LOADER,
    "torch_export": torch_export.LOADER,
    "onnx": onnx.LOADER,
    "keras": keras.LOADER,
}
"""Registry format → its loader. A new format is one module with a ``LOADER`` and one entry."""


def load_runtime(
    artifact: VersionArtifact,
    *,
    runtime: str = "auto",
    device: str = "auto",
    work_dir: Path,
    threads: int | None = None,
) -> Runtime:
    """Load a model version for inference.

    ``runtime`` is ``auto`` or an engine the format supports (``LOADERS[format].runtimes``):
    ``auto`` runs a catalog (safetensors) version on whichever of torch and an ONNX export
    on ONNX Runtime is faster and proven equal, and every other format on its own engine;
    ``runtime.selection`` says what was chosen and why. ``device`` is ``auto`` (CUDA when
    available), ``cpu``, ``cuda`` or ``cuda:N``. ``work_dir`` receives derived files (the
    ONNX export) and should be the version's own folder. ``threads`` sets the intra-op
    threads (see :func:`modelyard.runtimes.devices.intra_op_threads`).

    Raises:
        UnsupportedFormat: no loader serves ``artifact.format``.
        InvalidInput: an unknown runtime or device, or an artifact that does not load.

    Example::

        rt = load_runtime(VersionArtifact("safetensors", path, spec, signature, params),
                          work_dir=tmp)
        rt.infer({"input": rows})["output"]
    """
    loader = LOADERS.get(artifact.format)
    if loader is None:
        raise UnsupportedFormat(
            f"format {artifact.format!r} cannot be served; servable formats: " + ", ".join(LOADERS)
        )
    if runtime != "auto" and runtime not in loader.runtimes:
        choices = ", ".join(("auto", *loader.runtimes))
        raise InvalidInput(
            f"runtime: {runtime!r} cannot run {artifact.format} versions; choose {choices}"
        )
    loaded = loader.load(artifact, LoadOptions(runtime, device, work_dir, threads))
    if runtime == "auto" and len(loader.runtimes) == 1:
        loaded.selection = {
            "runtime": loaded.name,
            "reason": f"the only runtime for {artifact.format} versions",
        }
    try:
        describe_outputs(loaded)
    except Exception:
        loaded.close()
        raise
    return loaded


def describe_outputs(runtime: ModelRuntime) -> None:
    """Fill in the datatypes and shapes of outputs the format does not record (TorchScript)
    by running the model, when its inputs are known.

    Two calls, with 1 and then 2 rows (and 1, then 2 in every other dimension that varies),
    show each output's datatype and which of its dimensions vary (-1). Nothing changes when
    an input's datatype or shape is unknown, or when the outputs are all described.
    """
    if all(s.datatype is not None and s.shape is not None for s in runtime.outputs):
        return
    if any(s.datatype is None or s.shape is None for s in runtime.inputs):
        return
    calls = []
    for size in (1, 2):
        sample = {
            spec.name: np.zeros(
                [size if d < 0 else d for d in (spec.shape or [])],
                dtype=NUMPY_DTYPES[spec.datatype or "FP32"],
            )
            for spec in runtime.inputs
        }
        calls.append(runtime.infer(sample))
    first, second = calls
    described = []
    for spec in runtime.outputs:
        a, b = first.get(spec.name), second.get(spec.name)
        if a is None or b is None or a.ndim != b.ndim:
            described.append(spec)
            continue
        shape = [x if x == y else -1 for x, y in zip(a.shape, b.shape, strict=True)]
        datatype = spec.datatype or _datatype_of(a.dtype)
        described.append(
            TensorSpec(spec.name, datatype, spec.shape if spec.shape is not None else shape)
        )
    runtime.outputs = described


def _datatype_of(dtype: Any) -> str | None:
    return torch_datatype_name(str(dtype))
