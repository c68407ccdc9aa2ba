"""Whether a version can take another's place, and whether pipeline stages fit (no server)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import get_args

import pytest

from modelyard.errors import InvalidInput
from modelyard.runtimes.tensors import TensorSpec
from modelyard.serving.compat import Interface, feed_differences, swap_differences
from modelyard.serving.manager import postprocess_problem
from modelyard.serving.spec import DeploymentSpec, RuntimeName, check_runtime


def iface(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> Interface:
    return Interface(tuple(inputs), tuple(outputs))


KERAS = iface(
    [TensorSpec("input_layer", "FP32", [-1, 64])], [TensorSpec("output_0", "FP32", [-1, 10])]
)


def test_the_same_tensors_and_dynamic_dims_are_compatible() -> None:
    same = iface(
        [TensorSpec("input_layer", "FP32", [8, 64])], [TensorSpec("output_0", "FP32", [-1, 10])]
    )
    assert swap_differences(KERAS, same) == []
    # A new output breaks no client; an unknown datatype or shape cannot be told apart.
    more = iface(
        [TensorSpec("input_layer", None, None)],
        [TensorSpec("output_0", "FP32", [-1, 10]), TensorSpec("extra", "FP32", [-1])],
    )
    assert swap_differences(KERAS, more) == []


def test_a_renamed_input_is_named_on_both_sides() -> None:
    quantized = iface(
        [TensorSpec("input", "FP32", [-1, 64])], [TensorSpec("output_0", "FP32", [-1, 10])]
    )
    assert swap_differences(KERAS, quantized) == [
        "input 'input_layer' is gone and input 'input' is new"
    ]


def test_datatype_shape_and_missing_outputs_are_named() -> None:
    other = iface(
        [TensorSpec("input_layer", "FP16", [-1, 32])], [TensorSpec("logits", "FP32", [-1, 10])]
    )
    problems = swap_differences(KERAS, other)
    assert "output 'output_0' is gone (the new version returns ['logits'])" in problems
    assert "input 'input_layer' is FP16, was FP32" in problems
    assert "input 'input_layer' has shape [-1, 32], was [-1, 64]" in problems
    rank = iface([TensorSpec("input_layer", "FP32", [-1, 8, 8])], list(KERAS.outputs))
    assert swap_differences(KERAS, rank) == [
        "input 'input_layer' has shape [-1, 8, 8], was [-1, 64]"
    ]


def test_pipeline_stages_fit_by_name_or_one_to_one() -> None:
    encoder = [TensorSpec("output", "FP32", [-1, 10])]
    assert feed_differences("enc", encoder, "head", [TensorSpec("input", "FP32", [-1, 10])]) == []
    # 10 values per row cannot feed a 64-input model.
    assert feed_differences("enc", encoder, "head", [TensorSpec("input", "FP32", [-1, 64])]) == [
        "'enc' output 'output' [-1, 10] does not fit 'head' input 'input' [-1, 64]"
    ]
    # Flat rows feed an image input when a row holds as many values (a preprocessing
    # reshapes them); an unknown shape is left to the runtime.
    flat = [TensorSpec("output", "FP32", [-1, 64])]
    assert feed_differences("a", flat, "b", [TensorSpec("input", "FP32", [-1, 1, 8, 8])]) == []
    assert feed_differences("a", flat, "b", [TensorSpec("input", None, None)]) == []
    ids = [TensorSpec("ids", "INT64", [-1, 64])]
    assert "floats cannot feed an INT64 input" in feed_differences("a", flat, "b", ids)[0]
    two = [TensorSpec("x", "FP32", [-1, 4]), TensorSpec("y", "FP32", [-1, 4])]
    [problem] = feed_differences("a", flat, "b", two)
    assert "'a' returns ['output'] but 'b' takes ['x', 'y']" in problem


def test_postprocess_needs_one_scores_output_with_columns() -> None:
    spec = DeploymentSpec(model="m", postprocess={"softmax": True, "top_k": 2})
    scores = iface([], [TensorSpec("output", "FP32", [-1, 10])])
    assert postprocess_problem(spec, scores) is None
    single = iface([], [TensorSpec("output", "FP32", [-1, 1])])
    assert "single column" in (postprocess_problem(spec, single) or "")
    several = iface([], [TensorSpec("a", "FP32", [-1, 3]), TensorSpec("b", "FP32", [-1, 3])])
    assert "['a', 'b']" in (postprocess_problem(spec, several) or "")
    assert postprocess_problem(DeploymentSpec(model="m"), several) is None


def test_a_version_record_tells_its_tensors_without_loading() -> None:
    catalog = SimpleNamespace(
        format="safetensors",
        signature=None,
        spec={"arch": "mlp", "input_shape": [64], "hidden": [8], "num_outputs": 3},
        params={},
    )
    described = Interface.of_version(catalog)
    assert [(t.name, t.datatype, t.shape) for t in described.inputs] == [
        ("input", "FP32", [-1, 64])
    ]
    script = SimpleNamespace(
        format="torchscript",
        signature={
            "inputs": [{"name": "x", "datatype": None, "shape": None}],
            "outputs": [{"name": "output0", "datatype": None, "shape": None}],
        },
        spec=None,
        params={"preprocessing": {"input_shape": [1, 8, 8], "token_ids": False}},
    )
    assert Interface.of_version(script).inputs == (TensorSpec("x", "FP32", [-1, 1, 8, 8]),)


def test_the_runtime_values_are_the_engines_the_formats_run_on() -> None:
    from modelyard.runtimes import LOADERS

    engines = {name for loader in LOADERS.values() for name in loader.runtimes}
    assert set(get_args(RuntimeName)) == {"auto", *engines}
    check_runtime("torchscript", "torchscript", "version 1 of 'ts'")
    check_runtime("auto", "hf", "version 1 of 'llm'")
    with pytest.raises(InvalidInput, match="'torch' cannot run version 1 of 'ts', a torchscript"):
        check_runtime("torch", "torchscript", "version 1 of 'ts'")
