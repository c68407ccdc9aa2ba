"""Spec parsing: valid specs round-trip, invalid ones name the field at fault."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.errors import InvalidInput
from modelyard.nn import CNNSpec, MLPSpec, parse_spec

MLP = {"arch": "mlp", "input_shape": [64], "hidden": [32, 16], "num_outputs": 10}


def error_of(raw: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_spec(raw)
    return caught.value


def test_parsed_spec_dumps_to_json_that_parses_back_equal() -> None:
    spec = parse_spec(MLP)
    assert isinstance(spec, MLPSpec)
    dumped = spec.model_dump()
    assert dumped["arch"] == "mlp"
    assert dumped["hidden"] == [32, 16]
    assert parse_spec(dumped) == spec


def test_defaults_are_filled_in() -> None:
    spec = parse_spec({"arch": "cnn", "input_shape": [1, 28, 28], "num_outputs": 10})
    assert isinstance(spec, CNNSpec)
    assert [block.channels for block in spec.conv] == [32, 64]
    assert spec.task is None


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({**MLP, "hidden": [32, 0]}, "spec.hidden[1]", "must be > 0"),
        ({**MLP, "input_shape": []}, "spec.input_shape", "at least 1"),
        ({**MLP, "arch": "resnet"}, "spec.arch", "'mlp'"),
        ({"input_shape": [4], "num_outputs": 2}, "spec.arch", "required"),
        ({**MLP, "dropout": 1.5}, "spec.dropout", "< 1"),
        ({**MLP, "activation": "swish"}, "spec.activation", "relu"),
        ({**MLP, "layers": 3}, "spec.layers", "not a known field"),
        ({**MLP, "task": "ranking"}, "spec.task", "classification"),
        ({"arch": "mlp", "input_shape": [4]}, "spec.num_outputs", "required"),
        (
            {"arch": "cnn", "input_shape": [1, 8, 8], "num_outputs": 3, "conv": [{}]},
            "spec.conv[0].channels",
            "required",
        ),
        (
            {
                "arch": "cnn",
                "input_shape": [1, 8, 8],
                "num_outputs": 3,
                "conv": [{"channels": 4}] * 4,
            },
            "spec.conv[3]",
            "shrinks",
        ),
        (
            {
                "arch": "cnn",
                "input_shape": [8, 8],
                "num_outputs": 3,
                "conv": [{"channels": 4, "stride": 2}],
            },
            "spec.conv[0].padding",
            "stride 1",
        ),
        ({"arch": "cnn", "input_shape": [64], "num_outputs": 3}, "spec.input_shape", "[C, H, W]"),
        ({"arch": "rnn", "input_shape": [8], "num_outputs": 3}, "spec.input_shape", "[T, F]"),
        (
            {"arch": "rnn", "input_shape": [8, 8], "num_outputs": 3, "cell": "tcn"},
            "spec.cell",
            "gru",
        ),
        (
            {"arch": "rnn", "input_shape": [8, 8], "num_outputs": 3, "embedding_dim": 4},
            "spec.embedding_dim",
            "vocab_size",
        ),
        (
            {
                "arch": "transformer",
                "input_shape": [8],
                "vocab_size": 9,
                "d_model": 30,
                "num_outputs": 2,
            },
            "spec.num_heads",
            "does not divide",
        ),
        (
            {
                "arch": "transformer",
                "input_shape": [8],
                "vocab_size": 9,
                "max_len": 4,
                "num_outputs": 2,
            },
            "spec.max_len",
            "at least",
        ),
    ],
)
def test_invalid_spec_names_the_field(raw: dict[str, Any], field: str, words: str) -> None:
    error = error_of(raw)
    assert error.detail.startswith(f"{field}: ")
    assert words in error.detail
    assert {"field": field, "message": error.detail.split(": ", 1)[1]} in error.extra["errors"]


def test_every_error_is_reported_at_once() -> None:
    error = error_of({**MLP, "hidden": [0], "dropout": -1})
    fields = {item["field"] for item in error.extra["errors"]}
    assert fields == {"spec.hidden[0]", "spec.dropout"}


def test_non_object_spec_is_refused() -> None:
    assert error_of([1, 2]).detail == "spec: must be a JSON object"  # type: ignore[arg-type]
