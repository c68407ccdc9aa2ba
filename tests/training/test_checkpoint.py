"""Checkpoint bytes: safetensors plus JSON, no pickle, everything comes back as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load

from modelyard.errors import InvalidInput
from modelyard.training import checkpoint_from_bytes, checkpoint_to_bytes


def test_round_trip_keeps_types_and_values() -> None:
    state = {
        "model": {"w": torch.randn(3, 2), "steps": torch.tensor(4)},
        "optimizer": {
            "state": {0: {"exp_avg": torch.ones(2)}},
            "param_groups": [{"betas": (0.9, 0.99), "params": [0]}],
        },
        "numpy": np.arange(5, dtype=np.uint32),
        "best": float("inf"),
        "nothing": None,
        "history": [{"epoch": 1, "train": {"loss": 0.5}}],
        "flag": True,
    }
    back = checkpoint_from_bytes(checkpoint_to_bytes(state))
    assert torch.equal(back["model"]["w"], state["model"]["w"])
    assert back["model"]["steps"].shape == ()
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], torch.ones(2))
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.99)
    assert back["numpy"].dtype == np.uint32
    assert back["numpy"].tolist() == [0, 1, 2, 3, 4]
    assert back["best"] == float("inf")
    assert back["nothing"] is None
    assert back["history"] == state["history"]
    assert back["flag"] is True


def test_bytes_are_a_plain_safetensors_file() -> None:
    data = checkpoint_to_bytes({"w": torch.zeros(2)})
    assert set(load(data)) == {"t0"}


def test_unstorable_values_are_named() -> None:
    with pytest.raises(TypeError, match=r"state\.extra"):
        checkpoint_to_bytes({"extra": object()})


@pytest.mark.parametrize(
    "data", [b"", b"not a checkpoint at all", checkpoint_to_bytes.__doc__.encode()]
)
def test_garbage_is_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInput, match=r"checkpoint: not a readable Modelyard checkpoint"):
        checkpoint_from_bytes(data)
