"""Data-parallel training at the ML-core level: ranks started by the elastic launcher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from modelyard.training import train
from modelyard.training.distributed import launch, parse_distributed
from tests.distributed.ranks import ddp_rank, digits

SPEC = {"arch": "mlp", "input_shape": [64], "hidden": [32], "num_outputs": 10}
ROWS = 1024  # a multiple of the global batch: every step has the same rows in both runs
CONFIG: dict[str, Any] = {
    "optimizer": {"name": "sgd", "lr": 0.1},
    "epochs": 2,
    "batch_size": 64,
    "seed": 3,
    "preprocessing": {"scale": 0.0625},
}


@pytest.mark.slow
def test_two_workers_end_with_the_weights_of_one_process_with_the_same_global_batch(
    tmp_path: Path,
) -> None:
    x, y = digits()
    single = train(SPEC, CONFIG, x[:ROWS], y[:ROWS])
    results = launch(
        parse_distributed({"workers": 2, "max_restarts": 0}),
        ddp_rank,
        SPEC,
        CONFIG,
        ROWS,
        str(tmp_path / "ckpt.bin"),
        None,
    )
    assert sorted(results) == [0, 1]
    expected = single.model.state_dict()
    for rank in (0, 1):
        weights = results[rank]["weights"]
        assert weights.keys() == expected.keys()
        for name, value in expected.items():
            assert torch.allclose(weights[name], value, atol=1e-5, rtol=1e-4), (rank, name)
    # Each rank saw half of every epoch; the reported epoch metrics cover all rows.
    assert results[0]["steps"] == single.steps
    ddp_history, single_history = results[0]["history"], single.history
    for mine, theirs in zip(ddp_history, single_history, strict=True):
        assert mine["train"]["loss"] == pytest.approx(theirs["train"]["loss"], rel=1e-4)
        assert mine["train"]["accuracy"] == pytest.approx(theirs["train"]["accuracy"], abs=1e-3)
    assert results[0]["metrics"]["train"] == pytest.approx(single.metrics["train"], rel=1e-4)


@pytest.mark.slow
def test_a_killed_worker_restarts_the_group_from_the_last_checkpoint(tmp_path: Path) -> None:
    config = {**CONFIG, "checkpoint_every_steps": 5}
    x, y = digits()
    single = train(SPEC, config, x[:ROWS], y[:ROWS])
    results = launch(
        parse_distributed({"workers": 2, "max_restarts": 2}),
        ddp_rank,
        SPEC,
        config,
        ROWS,
        str(tmp_path / "ckpt.bin"),
        2,
    )
    assert results[0]["restarts"] == 1
    assert results[0]["resumed_from"] == 10
    assert results[0]["steps"] == single.steps
    for name, value in single.model.state_dict().items():
        assert torch.allclose(results[0]["weights"][name], value, atol=1e-5, rtol=1e-4), name


@pytest.mark.slow
def test_a_worker_killed_more_often_than_allowed_fails_the_launch(tmp_path: Path) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    config = {**CONFIG, "checkpoint_every_steps": 5}
    with pytest.raises(ChildFailedError):
        launch(
            parse_distributed({"workers": 2, "max_restarts": 0}),
            ddp_rank,
            SPEC,
            config,
            ROWS,
            str(tmp_path / "ckpt.bin"),
            1,
        )
