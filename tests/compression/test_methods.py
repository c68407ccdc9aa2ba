"""Method specs: what is accepted, and errors that name the field."""

from __future__ import annotations

import pytest

from modelyard.compression import PruneMethod, QuantizeMethod, parse_method
from modelyard.errors import InvalidInput


def test_methods_parse_by_name() -> None:
    method = parse_method({"name": "quantize", "scheme": "dynamic_int8"})
    assert isinstance(method, QuantizeMethod) and method.backend == "auto"
    prune = parse_method(
        {"name": "prune", "kind": "structured", "amount": 0.5, "fine_tune": {"dataset": "d"}}
    )
    assert isinstance(prune, PruneMethod) and prune.fine_tune is not None
    assert prune.fine_tune.optimizer.name == "adam" and prune.fine_tune.epochs == 3


def test_quantize_alone_is_dynamic_int8_on_onnx_runtime() -> None:
    from modelyard.compression import quantize_backend

    for raw in ({"name": "quantize"}, "quantize"):
        method = parse_method(raw)
        assert isinstance(method, QuantizeMethod) and method.scheme == "dynamic_int8"
        assert quantize_backend(method, "catalog") == "onnxruntime"
    named = parse_method({"name": "quantize", "modules": ["head"]})
    assert isinstance(named, QuantizeMethod) and quantize_backend(named, "catalog") == "torchao"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"name": "squeeze"}, "method.name"),
        ({"name": "quantize", "scheme": "int3"}, "method.scheme"),
        ({"name": "quantize", "scheme": "static_int8"}, "method.calibration_dataset"),
        (
            {"name": "quantize", "scheme": "dynamic_int8", "calibration_dataset": "x"},
            "method.calibration_dataset",
        ),
        ({"name": "prune", "kind": "unstructured", "sparsity": 1.5}, "method.sparsity"),
        ({"name": "prune", "kind": "structured", "sparsity": 0.5}, "method.amount"),
        ({"name": "cast", "dtype": "int8"}, "method.dtype"),
        ({"name": "export", "format": "tflite"}, "method.format"),
        ({"name": "export", "format": "onnx", "opset": 9}, "method.opset"),
        ({"name": "cast", "dtype": "float16", "extra": 1}, "method.extra"),
        (
            {"name": "prune", "kind": "structured", "amount": 0.5, "fine_tune": {"epochs": 2}},
            "method.fine_tune.dataset",
        ),
    ],
)
def test_bad_methods_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_method(raw)
    assert field in caught.value.detail
