"""``auto`` for catalog models: ONNX Runtime when it is proven equal and is faster.

The model is exported to ONNX by the TorchScript-based exporter, which takes a fraction of
a second (the dynamo exporter, several seconds per model, is tried too only when ONNX
Runtime is asked for by name). Both engines run the same random batches built from the
signature (1 and 32 rows, model-ready, as after preprocessing); their outputs must agree
(``allclose``, atol 1e-4, rtol 1e-3); then each is timed at both batch sizes. ONNX
Runtime is kept when the geometric mean of its time ratios to torch is below 1; any
failure keeps torch. The decision and the numbers are left in the runtime's
``selection``::

    {"runtime": "onnxruntime", "reason": "...", "exporter": "torchscript",
     "max_abs_diff": 2.4e-07, "onnxruntime_time_ratio": 0.41, "seconds": 0.6,
     "timings_ms": {"torch": {"batch_1": 0.09, "batch_32": 0.2}, "onnxruntime": {...}}}
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.runtimes.onnx_export import export_onnx
from modelyard.runtimes.runtime import LoadOptions, ModelRuntime
from modelyard.runtimes.tensors import NUMPY_DTYPES, TensorSpec

if TYPE_CHECKING:
    from torch import nn

    from modelyard.runtimes.torch_module import TorchRuntime
    from modelyard.training.preprocess import Preprocessor

ATOL = 1e-4
RTOL = 1e-3
BATCHES = (1, 32)
# Per engine and batch size: a warm-up, then up to MAX_RUNS timed runs within BUDGET_S.
BUDGET_S = 0.2
MIN_RUNS = 3
MAX_RUNS = 25
Forward = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


def choose_runtime(
    torch_runtime: TorchRuntime,
    model: nn.Module,
    *,
    preprocessor: Preprocessor | None,
    options: LoadOptions,
    threads: int,
    vocab_size: int | None,
) -> ModelRuntime:
    """The faster of ``torch_runtime`` and an ONNX Runtime export proven equal to it.

    With ``options.runtime == "onnxruntime"`` the export is required: a failed export or a
    mismatch raises InvalidInput instead of falling back to torch.
    """
    import torch

    from modelyard.runtimes.ort import OnnxRuntime

    required = options.runtime == "onnxruntime"
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    samples = {rows: sample_inputs(torch_runtime.inputs, rows, rng, vocab_size) for rows in BATCHES}
    selection: dict[str, Any] = {}
    ort_runtime: OnnxRuntime | None = None
    try:
        example = tuple(
            torch.from_numpy(a).to(torch_runtime.device)
            for a in sample_inputs(torch_runtime.inputs, 2, rng, vocab_size).values()
        )
        path = options.work_dir / "model.onnx"
        selection["exporter"] = export_onnx(
            model,
            example,
            path,
            input_names=[s.name for s in torch_runtime.inputs],
            output_names=[s.name for s in torch_runtime.outputs],
            fallback=required,
        )
        ort_runtime = OnnxRuntime(
            path, device=options.device, threads=threads, preprocessor=preprocessor
        )
        selection["max_abs_diff"] = _max_abs_diff(torch_runtime, ort_runtime, samples)
    except Exception as exc:
        if ort_runtime is not None:
            ort_runtime.close()
        reason = f"the ONNX export failed or differs from torch: {exc}"
        if required:
            raise InvalidInput(f"runtime onnxruntime: {reason}") from exc
        return _keep(torch_runtime, torch_runtime, {**selection, "reason": reason}, started)

    if required:
        reason = "requested; the ONNX export matches torch"
        return _keep(ort_runtime, torch_runtime, {**selection, "reason": reason}, started)
    timings = {
        rt.name: {f"batch_{rows}": _median_ms(rt.forward, samples[rows]) for rows in BATCHES}
        for rt in (torch_runtime, ort_runtime)
    }
    ratios = [timings["onnxruntime"][k] / timings["torch"][k] for k in timings["torch"]]
    ratio = math.prod(ratios) ** (1 / len(ratios))
    selection.update(timings_ms=timings, onnxruntime_time_ratio=ratio)
    if ratio < 1:
        reason = f"onnxruntime matches torch and takes {ratio:.2f}x its time"
        return _keep(ort_runtime, torch_runtime, {**selection, "reason": reason}, started)
    reason = f"onnxruntime matches torch but takes {ratio:.2f}x its time"
    return _keep(torch_runtime, ort_runtime, {**selection, "reason": reason}, started)


def sample_inputs(
    specs: list[TensorSpec], rows: int, rng: np.random.Generator, vocab_size: int | None
) -> dict[str, np.ndarray]:
    """Random model-ready inputs: normal floats, ids below ``vocab_size``, random bools."""
    arrays = {}
    for spec in specs:
        dims = spec.shape[1:] if spec.shape else []
        shape = (rows, *(d if d > 0 else 1 for d in dims))
        dtype = NUMPY_DTYPES[spec.datatype or "FP32"]
        if dtype.kind == "f":
            arrays[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            arrays[spec.name] = rng.integers(0, vocab_size or 2, shape).astype(dtype)
        elif dtype.kind == "b":
            arrays[spec.name] = rng.random(shape) < 0.5
        else:
            raise InvalidInput(f"input {spec.name!r}: no sample can be made for {spec.datatype}")
    return arrays


def _keep(
    chosen: ModelRuntime, dropped: ModelRuntime, selection: dict[str, Any], started: float
) -> ModelRuntime:
    if dropped is not chosen:
        dropped.close()
    chosen.selection = {
        "runtime": chosen.name,
        **selection,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return chosen


def _max_abs_diff(
    reference: ModelRuntime, candidate: ModelRuntime, samples: Mapping[int, dict[str, np.ndarray]]
) -> float:
    """The largest difference over every output; ValueError when they are not allclose."""
    worst = 0.0
    for rows, arrays in samples.items():
        want, got = reference.forward(arrays), candidate.forward(arrays)
        if set(want) != set(got):
            raise ValueError(f"outputs {sorted(got)} are not torch's {sorted(want)}")
        for name, expected in want.items():
            actual = got[name]
            if actual.shape != expected.shape:
                raise ValueError(
                    f"output {name!r} has shape {list(actual.shape)} at batch {rows}, "
                    f"torch gives {list(expected.shape)}"
                )
            diff = float(np.max(np.abs(actual.astype(np.float64) - expected), initial=0.0))
            if not np.allclose(actual, expected, atol=ATOL, rtol=RTOL):
                raise ValueError(f"output {name!r} differs by up to {diff:.3g} at batch {rows}")
            worst = max(worst, diff)
    return worst


def _median_ms(forward: Forward, arrays: Mapping[str, np.ndarray]) -> float:
    forward(arrays)
    runs: list[float] = []
    deadline = time.perf_counter() + BUDGET_S
    while len(runs) < MAX_RUNS and (len(runs) < MIN_RUNS or time.perf_counter() < deadline):
        start = time.perf_counter()
        forward(arrays)
        runs.append(time.perf_counter() - start)
    return round(statistics.median(runs) * 1000, 4)
