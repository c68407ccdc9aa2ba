"""Private (DP-SGD) data-parallel training: two ranks take one Poisson sample per step between
them, the noise is added once, and both account for every step."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from modelyard.training import train
from modelyard.training.distributed import launch, parse_distributed
from tests.distributed.ranks import digits, private_ddp_rank

SPEC = {"arch": "mlp", "input_shape": [64], "hidden": [32], "num_outputs": 10}
ROWS = 1024
CONFIG: dict[str, Any] = {
    "optimizer": {"name": "adam", "lr": 0.02},
    "epochs": 3,
    "batch_size": 128,
    "preprocessing": {"scale": 0.0625},
    "privacy": {"noise_multiplier": 1.0, "target_delta": 1e-5},
}


@pytest.mark.slow
def test_two_private_workers_finish_with_one_model_and_the_single_process_epsilon() -> None:
    x, y = digits()
    single = train(SPEC, CONFIG, x[:ROWS], y[:ROWS])
    results = launch(
        parse_distributed({"workers": 2, "max_restarts": 0}), private_ddp_rank, SPEC, CONFIG, ROWS
    )
    assert sorted(results) == [0, 1]
    first, second = results[0], results[1]
    for name, value in first["weights"].items():
        assert torch.equal(value, second["weights"][name]), name
    assert single.privacy is not None
    for rank in (first, second):
        assert rank["steps"] == single.steps == 3 * 8
        assert rank["privacy"]["steps"] == single.privacy["steps"]
        assert rank["privacy"]["epsilon"] == single.privacy["epsilon"]
    assert first["metrics"]["train"]["accuracy"] > 0.5
