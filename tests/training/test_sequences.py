"""Recurrent and Transformer models on sequence tasks, clearly above chance."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.training import train

from .conftest import Split
from .helpers import held_out_metrics


@pytest.mark.parametrize(
    "rnn",
    [
        {"cell": "lstm"},
        {"cell": "gru", "bidirectional": True, "pooling": "mean"},
    ],
    ids=["lstm", "bigru-mean"],
)
def test_rnn_reads_digits_as_eight_rows_of_eight(digits: Split, rnn: dict[str, object]) -> None:
    spec = {"arch": "rnn", "input_shape": [8, 8], "hidden_size": 48, "num_outputs": 10, **rnn}
    config = {
        "epochs": 10,
        "optimizer": {"name": "adam", "lr": 1e-2},
        "preprocessing": {"scale": 1 / 16},
        "grad_clip_norm": 1.0,
    }
    result = train(spec, config, digits.x_train, digits.y_train)
    test = held_out_metrics(result, digits.x_test, digits.y_test, ["accuracy"], "cross_entropy")
    assert test["accuracy"] >= 0.8  # chance is 0.1


def token_task(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of 10 token ids from 12; the label says whether token 3 occurs."""
    generator = np.random.default_rng(seed)
    tokens = generator.integers(0, 12, size=(rows, 10))
    return tokens, (tokens == 3).any(axis=1).astype(np.int64)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_transformer_finds_a_token(pooling: str) -> None:
    x_train, y_train = token_task(1500, seed=0)
    x_test, y_test = token_task(400, seed=1)
    spec = {
        "arch": "transformer",
        "input_shape": [10],
        "vocab_size": 12,
        "d_model": 32,
        "num_heads": 4,
        "num_layers": 1,
        "dim_feedforward": 64,
        "dropout": 0.0,
        "pooling": pooling,
        "num_outputs": 2,
    }
    config = {
        "epochs": 8,
        "optimizer": {"name": "adamw", "lr": 3e-3},
        "schedule": {"name": "cosine", "warmup_steps": 20},
    }
    result = train(spec, config, x_train, y_train)
    test = held_out_metrics(result, x_test, y_test, ["accuracy"], "cross_entropy")
    majority = max(y_test.mean(), 1 - y_test.mean())
    assert test["accuracy"] >= max(0.85, majority + 0.2)


def test_rnn_over_token_ids_with_embedding() -> None:
    x_train, y_train = token_task(1500, seed=2)
    x_test, y_test = token_task(400, seed=3)
    spec = {
        "arch": "rnn",
        "cell": "gru",
        "input_shape": [10],
        "vocab_size": 12,
        "hidden_size": 32,
        "num_outputs": 2,
    }
    config = {"epochs": 8, "optimizer": {"name": "adam", "lr": 1e-2}}
    result = train(spec, config, x_train, y_train)
    test = held_out_metrics(result, x_test, y_test, ["accuracy"], "cross_entropy")
    assert test["accuracy"] >= 0.85
