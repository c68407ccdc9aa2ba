"""Int8 quantization of ONNX models with ONNX Runtime's quantizer.

Dynamic: int8 weights, activations quantized at run time (``MatMulInteger``), for every
operator ONNX Runtime's dynamic quantizer knows except ``Conv``: on x86 its
``ConvInteger`` is several times slower than the float ``Conv`` (the digits CNN at batch
32: 1.3 ms against 0.25 ms), so convolutions stay float. Static:
int8 weights per channel and uint8 activations whose ranges are calibrated on real inputs,
written in QDQ form, which ONNX Runtime fuses into integer kernels (``QLinearConv``…).
Both run ``quant_pre_process`` first: its shape inference is what lets the quantizer read
models from torch's exporter (onnxruntime issue 25890).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from modelyard.errors import InvalidInput

# Left float by the dynamic quantizer (see above).
FLOAT_OPS = ("Conv",)


def _pre_process(source: Path, work: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = work / "preprocessed.onnx"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quant_pre_process(str(source), str(target), skip_symbolic_shape=False)
    except Exception as exc:
        raise InvalidInput(
            f"ONNX Runtime cannot prepare the model for quantization: {exc}"
        ) from exc
    return target


def quantize_dynamic_onnx(source: Path, target: Path, work: Path) -> list[str]:
    """Write ``source`` with int8 weights and dynamically quantized activations.

    Returns the operator types quantization added (``MatMulInteger``…); raises InvalidInput
    when it quantized nothing, as for a network of convolutions only.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    prepared = _pre_process(source, work)
    present = _op_types(prepared)
    op_types = [op for op in IntegerOpsRegistry if op not in FLOAT_OPS]
    try:
        _quiet(
            lambda: quantize_dynamic(
                str(prepared),
                str(target),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=op_types,
            )
        )
    except Exception as exc:
        raise InvalidInput(f"ONNX Runtime's dynamic quantization failed: {exc}") from exc
    added = sorted(_op_types(target) - present)
    if not added:
        raise InvalidInput(
            "method.scheme: dynamic_int8 found no layer to quantize (matrix products, LSTMs, "
            "attention; convolutions stay float): static_int8 quantizes convolutions"
        )
    return added


def _op_types(path: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}


def quantize_static_onnx(
    source: Path, target: Path, work: Path, calibration: np.ndarray, batch_size: int = 32
) -> None:
    """Write ``source`` in QDQ int8, activation ranges calibrated on ``calibration`` rows.

    ``calibration`` holds model-ready inputs (after preprocessing), shaped like the input.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    prepared = _pre_process(source, work)
    session = ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    del session

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches = _batches(calibration, batch_size)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    try:
        _quiet(
            lambda: quantize_static(
                str(prepared),
                str(target),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
            )
        )
    except Exception as exc:
        raise InvalidInput(f"ONNX Runtime's static quantization failed: {exc}") from exc


def _batches(rows: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), size):
        yield np.ascontiguousarray(rows[start : start + size], dtype=np.float32)


def _quiet(call: Callable[[], object]) -> None:
    """Run ``call`` without the quantizer's progress lines on stdout and in the log."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            call()
    finally:
        logger.setLevel(level)
