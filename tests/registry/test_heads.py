"""Every uploaded format records what its outputs are: read from the graph, or stated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.support.data import MLP_SPEC, mlp_safetensors

from modelyard.errors import InvalidInput
from modelyard.registry.artifacts import ArtifactInfo, inspect_artifact
from modelyard.registry.keras import keras_module
from modelyard.runtimes.outputs import OutputKind

HEADS: dict[str, tuple[Callable[[], torch.nn.Module], OutputKind]] = {
    "softmax": (lambda: torch.nn.Softmax(dim=1), "probabilities"),
    "sigmoid": (torch.nn.Sigmoid, "binary_probabilities"),
    "linear": (torch.nn.Identity, "logits"),
    "log_softmax": (lambda: torch.nn.LogSoftmax(dim=1), "logits"),
}


def _inspect(path: Path, work: Path, declared: Any = None) -> ArtifactInfo:
    work.mkdir(exist_ok=True)
    return inspect_artifact(
        path,
        declared_format=None,
        filename=path.name,
        spec=None,
        work_dir=work,
        max_unpacked_bytes=64 << 20,
        declared_outputs=declared,
    )


def _net(head: str) -> torch.nn.Module:
    torch.manual_seed(0)
    make, _ = HEADS[head]
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3), make()
    )


def _save(net: torch.nn.Module, fmt: str, path: Path) -> Path:
    example = (torch.zeros(2, 4),)
    if fmt == "torchscript":
        torch.jit.save(torch.jit.script(net), str(path))
    elif fmt == "torchscript_traced":
        torch.jit.save(torch.jit.trace(net.eval(), example), str(path))  # type: ignore[no-untyped-call]
    elif fmt == "torch_export":
        torch.export.save(torch.export.export(net.eval(), example), str(path))
    else:
        torch.onnx.export(net.eval(), example, str(path), dynamo=False)
    return path


SUFFIX = {
    "torchscript": ".pt",
    "torchscript_traced": ".pt",
    "torch_export": ".pt2",
    "onnx": ".onnx",
}


@pytest.mark.parametrize("fmt", list(SUFFIX))
@pytest.mark.parametrize("head", list(HEADS))
def test_a_graph_that_ends_in_softmax_or_sigmoid_records_probabilities(
    fmt: str, head: str, tmp_path: Path
) -> None:
    path = _save(_net(head), fmt, tmp_path / f"m{SUFFIX[fmt]}")
    assert _inspect(path, tmp_path / "w").outputs == HEADS[head][1]


def _keras(path: Path, *last: Any) -> Path:
    keras = keras_module()
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), *last]).save(
        str(path)
    )
    return path


def test_a_keras_model_records_its_last_activation(tmp_path: Path) -> None:
    layers = keras_module().layers
    cases: list[tuple[list[Any], OutputKind]] = [
        ([layers.Dense(10, activation="softmax")], "probabilities"),
        ([layers.Dense(10), layers.Softmax()], "probabilities"),
        ([layers.Dense(10), layers.Activation("softmax"), layers.Dropout(0.2)], "probabilities"),
        ([layers.Dense(1, activation="sigmoid")], "binary_probabilities"),
        ([layers.Dense(10)], "logits"),
        ([layers.Dense(10, activation="log_softmax")], "logits"),
    ]
    for index, (last, expected) in enumerate(cases):
        path = _keras(tmp_path / f"m{index}.keras", *last)
        assert _inspect(path, tmp_path / f"w{index}").outputs == expected, last


def test_a_functional_keras_model_records_its_output_layers_activation(tmp_path: Path) -> None:
    keras = keras_module()
    inputs = keras.Input((4,))
    scores = keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(8)(inputs))
    keras.Model(inputs, scores).save(str(tmp_path / "f.keras"))
    assert _inspect(tmp_path / "f.keras", tmp_path / "w").outputs == "probabilities"


def test_the_uploader_may_state_what_the_outputs_are(tmp_path: Path) -> None:
    path = _save(_net("linear"), "onnx", tmp_path / "m.onnx")
    info = _inspect(path, tmp_path / "w", declared="probabilities")
    assert info.outputs == "probabilities"
    with pytest.raises(InvalidInput, match=r"params\.outputs: 'softmax' is not one of logits"):
        _inspect(path, tmp_path / "w", declared="softmax")


def test_catalog_versions_output_logits_and_cannot_claim_otherwise(tmp_path: Path) -> None:
    path = mlp_safetensors(tmp_path / "m.safetensors", MLP_SPEC)
    assert _inspect(path, tmp_path / "w").outputs == "logits"
    assert _inspect(path, tmp_path / "w", declared="logits").outputs == "logits"
    with pytest.raises(InvalidInput, match="linear head"):
        _inspect(path, tmp_path / "w", declared="probabilities")
