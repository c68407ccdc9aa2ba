"""Pruning: magnitude masks kept through fine-tuning, and structured pruning that shrinks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelyard.compression import compress, parse_method
from modelyard.compression.prune import (
    magnitude_masks,
    sparsity_of,
    structured_prune,
    structured_targets,
)
from modelyard.errors import InvalidInput
from modelyard.nn import build_model, parse_spec
from tests.compression.conftest import CNN, MLP, Trained, accuracy


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_80_percent_unstructured_with_fine_tuning_loses_at_most_a_point(
    mlp: Trained, tmp_path: Path
) -> None:
    method = parse_method(
        {
            "name": "prune",
            "kind": "unstructured",
            "sparsity": 0.8,
            "fine_tune": {"dataset": "digits", "epochs": 3},
        }
    )
    child = compress(method, mlp.source, mlp.data, tmp_path)
    assert child.compression is not None
    modules = child.compression["modules"]
    assert modules == ["layers.0.linear", "layers.1.linear", "head"]
    # The zeros survived fine-tuning.
    assert sparsity_of(child.module, modules) >= 0.8
    assert child.compression["sparsity"] >= 0.8
    assert accuracy(mlp.fresh(), mlp.data) - accuracy(child.module, mlp.data) <= 0.01
    assert len(child.facts["fine_tune"]) == 3


def test_layer_scope_prunes_each_layer_to_the_target() -> None:
    torch.manual_seed(0)
    model = build_model(MLP)
    modules = ["layers.0.linear", "head"]
    masks = magnitude_masks(model, modules, 0.5, "layer")
    for name in modules:
        assert float(1 - masks[name].mean()) == pytest.approx(0.5, abs=1e-3)


def _with_dead_units(spec: dict[str, object]) -> torch.nn.Module:
    """A model in which the odd units of every prunable layer output exactly zero."""
    torch.manual_seed(0)
    model = build_model(spec).eval()
    with torch.no_grad():
        for name in structured_targets(parse_spec(spec), None):
            layer = model.get_submodule(name)
            layer.weight[1::2] = 0.0
            if layer.bias is not None:
                layer.bias[1::2] = 0.0
            # The even units are clearly alive, so they rank above the dead ones.
            layer.weight[0::2] += torch.sign(layer.weight[0::2]) * 0.1
    return model


@pytest.mark.parametrize(
    "spec",
    [
        MLP,
        {**CNN, "conv": [{"channels": 16, "batch_norm": True}, {"channels": 32}]},
    ],
)
def test_removing_dead_units_leaves_the_outputs_unchanged(spec: dict[str, object]) -> None:
    model = _with_dead_units(spec)
    parsed = parse_spec(spec)
    targets = structured_targets(parsed, None)
    smaller, new_spec = structured_prune(model, parsed, 0.5, targets)
    x = torch.randn(5, *parsed.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(smaller(x), model(x), atol=1e-5, rtol=1e-5)
    assert _params(model) / _params(smaller) >= 1.8
    if new_spec.arch == "cnn":
        assert [c.channels for c in new_spec.conv] == [8, 16]


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_structured_pruning_of_half_the_units_shrinks_the_trained_models(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    trained: Trained = request.getfixturevalue(which)
    method = parse_method(
        {
            "name": "prune",
            "kind": "structured",
            "amount": 0.5,
            "fine_tune": {"dataset": "digits", "epochs": 3},
        }
    )
    child = compress(method, trained.source, trained.data, tmp_path)
    assert child.compression is None and child.spec is not None
    assert _params(trained.fresh()) / _params(child.module) >= 1.8
    assert accuracy(trained.fresh(), trained.data) - accuracy(child.module, trained.data) <= 0.03
    reloaded = build_model(child.spec)
    from modelyard.nn import read_weights

    state, stored_spec = read_weights(child.artifact)
    reloaded.load_state_dict(state)
    assert stored_spec is not None and stored_spec.model_dump(mode="json") == child.spec


def test_structured_pruning_refuses_what_it_cannot_shrink() -> None:
    rnn = parse_spec({"arch": "rnn", "input_shape": [8, 8], "num_outputs": 10})
    with pytest.raises(InvalidInput, match="mlp and cnn"):
        structured_targets(rnn, None)
    with pytest.raises(InvalidInput, match=r"method.modules\[0\]: 'head'"):
        structured_targets(parse_spec(MLP), ["head"])
