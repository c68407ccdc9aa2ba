"""A signature declared at push completes what the artifact records, and may not contradict it."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.errors import InvalidInput
from modelyard.registry.signature import with_declared

SCRIPT: dict[str, Any] = {
    "inputs": [{"name": "x", "datatype": None, "shape": None}],
    "outputs": [{"name": "output0", "datatype": None, "shape": None}],
}


def test_declared_tensors_fill_what_torchscript_does_not_record() -> None:
    declared = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}],
    }
    assert with_declared(SCRIPT, declared, "torchscript") == declared
    only_inputs = {"inputs": [{"datatype": "INT64", "shape": [-1, -1]}]}
    assert with_declared(SCRIPT, only_inputs, "torchscript") == {
        "inputs": [{"name": "x", "datatype": "INT64", "shape": [-1, -1]}],
        "outputs": SCRIPT["outputs"],
    }
    assert with_declared(SCRIPT, None, "torchscript") is SCRIPT


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"inputs": [{"name": "y"}]}, "names this tensor 'x'"),
        ({"inputs": []}, "has 1 inputs ('x')"),
        ({"inputs": [{"datatype": "FLOAT"}]}, "'FLOAT' is not one of"),
        ({"inputs": [{"shape": [-2, 4]}]}, "-1 for one that varies"),
        ({"inputs": [{"shape": [True]}]}, "-1 for one that varies"),
        ({"inputs": [{"dtype": "FP32"}]}, '"name", "datatype" and "shape"'),
        ({"tensors": []}, '"inputs" and "outputs"'),
        ([], '"inputs" and "outputs"'),
    ],
)
def test_malformed_declarations_are_refused(declared: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        with_declared(SCRIPT, declared, "torchscript")


def test_a_recorded_datatype_or_shape_cannot_be_contradicted() -> None:
    onnx = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
    }
    same = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]}
    assert with_declared(onnx, same, "onnx") == onnx
    with pytest.raises(InvalidInput, match="the file records 'FP32', not 'FP16'"):
        with_declared(onnx, {"inputs": [{"datatype": "FP16"}]}, "onnx")
    with pytest.raises(InvalidInput, match="have no tensors to describe"):
        with_declared(None, same, "hf")
