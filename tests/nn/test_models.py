"""Every architecture builds from its spec and maps a batch to [batch, num_outputs]."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from modelyard.nn import (
    HEAD_MODULES,
    build_model,
    check_weights,
    head_name,
    parse_spec,
    spec_signature,
)

CASES: list[tuple[dict[str, Any], torch.Tensor]] = [
    (
        {"arch": "mlp", "input_shape": [4], "hidden": [8, 8], "dropout": 0.1, "num_outputs": 3},
        torch.randn(5, 4),
    ),
    ({"arch": "mlp", "input_shape": [2, 3], "num_outputs": 1}, torch.randn(5, 2, 3)),
    (
        {
            "arch": "cnn",
            "input_shape": [3, 16, 12],
            "conv": [
                {"channels": 4, "batch_norm": True},
                {"channels": 6, "kernel_size": 5, "padding": 2, "pool": "avg"},
                {"channels": 8, "padding": "valid", "pool": "none"},
            ],
            "hidden": [7],
            "num_outputs": 4,
        },
        torch.randn(5, 3, 16, 12),
    ),
    ({"arch": "cnn", "input_shape": [8, 8], "num_outputs": 10}, torch.randn(5, 8, 8)),
    (
        {"arch": "rnn", "cell": "lstm", "input_shape": [6, 3], "num_outputs": 2},
        torch.randn(5, 6, 3),
    ),
    (
        {
            "arch": "rnn",
            "cell": "gru",
            "bidirectional": True,
            "num_layers": 2,
            "dropout": 0.2,
            "pooling": "mean",
            "input_shape": [6, 3],
            "num_outputs": 2,
        },
        torch.randn(5, 6, 3),
    ),
    (
        {
            "arch": "rnn",
            "cell": "rnn",
            "bidirectional": True,
            "vocab_size": 20,
            "embedding_dim": 8,
            "input_shape": [7],
            "num_outputs": 3,
        },
        torch.randint(0, 20, (5, 7)),
    ),
    (
        {"arch": "transformer", "input_shape": [9], "vocab_size": 20, "num_outputs": 2},
        torch.randint(0, 20, (5, 9)),
    ),
    (
        {
            "arch": "transformer",
            "input_shape": [6, 3],
            "d_model": 16,
            "num_heads": 2,
            "pooling": "cls",
            "positional": "learned",
            "num_outputs": 1,
        },
        torch.randn(5, 6, 3),
    ),
]


@pytest.mark.parametrize(
    ("raw", "batch"), CASES, ids=lambda c: c["arch"] if isinstance(c, dict) else ""
)
def test_model_maps_batch_to_outputs(raw: dict[str, Any], batch: torch.Tensor) -> None:
    torch.manual_seed(0)  # with tiny widths, some draws leave every ReLU unit dead
    model = build_model(raw)
    model.eval()
    out = model(batch)
    assert out.shape == (5, raw["num_outputs"])
    assert torch.isfinite(out).all()
    # Gradients reach the first parameter, so every part is wired in.
    model.train()
    model(batch).pow(2).sum().backward()
    first = next(iter(model.parameters()))
    assert first.grad is not None
    assert first.grad.abs().sum() > 0


def test_head_is_the_last_linear_layer_of_every_arch() -> None:
    for raw, _batch in CASES:
        model = build_model(raw)
        head = getattr(model, head_name(raw))
        assert isinstance(head, torch.nn.Linear)
        assert head.out_features == raw["num_outputs"]
    assert set(HEAD_MODULES) == {"mlp", "cnn", "rnn", "transformer"}


def test_sinusoidal_table_is_not_part_of_the_weights() -> None:
    model = build_model(
        {"arch": "transformer", "input_shape": [9], "vocab_size": 20, "num_outputs": 2}
    )
    assert not any("table" in name for name in model.state_dict())


def test_transformer_refuses_sequences_longer_than_max_len() -> None:
    model = build_model(
        {"arch": "transformer", "input_shape": [4], "vocab_size": 20, "num_outputs": 2}
    )
    with pytest.raises(ValueError, match=r"longer than max_len"):
        model(torch.zeros(1, 5, dtype=torch.long))


def test_same_seed_builds_same_weights() -> None:
    raw = CASES[0][0]
    torch.manual_seed(3)
    first = build_model(raw).state_dict()
    torch.manual_seed(3)
    second = build_model(raw).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_signature_for_float_features() -> None:
    signature = spec_signature({"arch": "cnn", "input_shape": [1, 28, 28], "num_outputs": 10})
    assert signature == {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}],
    }


def test_signature_for_token_ids() -> None:
    spec = parse_spec({"arch": "rnn", "input_shape": [12], "vocab_size": 50, "num_outputs": 2})
    signature = spec_signature(spec)
    assert signature["inputs"] == [{"name": "input", "datatype": "INT64", "shape": [-1, 12]}]
    assert signature["outputs"][0]["shape"] == [-1, 2]


@pytest.mark.parametrize("raw", [raw for raw, _ in CASES], ids=lambda c: c["arch"])
def test_every_model_passes_its_own_weight_check(raw: dict[str, Any]) -> None:
    check_weights(raw, build_model(raw).state_dict())
