"""Asynchronous SGD against a parameter server (torch.distributed.rpc), at the ML-core level."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from modelyard.nn import build_model
from modelyard.training.distributed import launch, parse_distributed
from tests.distributed.ranks import ps_rank, shuffled_digits

SPEC = {"arch": "mlp", "input_shape": [64], "hidden": [64], "num_outputs": 10}
TRAIN_ROWS = 1400
CONFIG: dict[str, Any] = {
    "optimizer": {"name": "adam", "lr": 0.005},
    "epochs": 6,
    "batch_size": 32,
    "seed": 0,
    "preprocessing": {"scale": 0.0625},
    "log_every_steps": 20,
}


@pytest.mark.slow
def test_two_workers_and_a_server_train_the_digits_mlp_to_93_percent() -> None:
    group = parse_distributed({"strategy": "parameter_server", "workers": 3, "max_restarts": 0})
    results = launch(group, ps_rank, SPEC, CONFIG, TRAIN_ROWS)
    assert results[1] is None and results[2] is None
    served = results[0]
    summary = served["history"][-1]
    # Every pushed gradient was either applied or dropped as too stale.
    steps_per_worker = -(-(TRAIN_ROWS // 2) // 32)
    assert summary["updates"] + summary["dropped_stale"] == 2 * steps_per_worker * CONFIG["epochs"]
    assert summary["updates"] == served["steps"] > 0
    assert any(e["type"] == "step" for e in served["events"])

    model = build_model(SPEC)
    model.load_state_dict(served["weights"])
    model.eval()
    x, y = shuffled_digits()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x[TRAIN_ROWS:] * 0.0625)).argmax(1)
    accuracy = float((predicted == torch.from_numpy(y[TRAIN_ROWS:])).float().mean())
    assert accuracy >= 0.93
