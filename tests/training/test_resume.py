"""A run killed and resumed from its last checkpoint ends with exactly the same weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from modelyard.errors import InvalidInput
from modelyard.training import (
    BaseCallbacks,
    TrainResult,
    checkpoint_from_bytes,
    checkpoint_to_bytes,
    epoch_order,
    train,
)

from .conftest import Split


class Crash(Exception):
    """Stands in for a killed process."""


class CrashAfter(BaseCallbacks):
    """Stores checkpoints as bytes (as the blob store would) and dies after ``step``."""

    def __init__(self, step: int):
        self.step = step
        self.stored: list[bytes] = []

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self.stored.append(checkpoint_to_bytes(state))

    def on_event(self, event: dict[str, Any]) -> None:
        if event["type"] == "step" and event["step"] == self.step:
            raise Crash


CLASSIFIER = {
    "arch": "mlp",
    "input_shape": [64],
    "hidden": [32, 32],
    "dropout": 0.3,  # dropout draws from the RNG, which the checkpoint must carry
    "num_outputs": 10,
}
REGRESSOR = {
    "arch": "mlp",
    "input_shape": [10],
    "hidden": [16],
    "dropout": 0.2,
    "num_outputs": 1,
    "task": "regression",
}
CONFIG: dict[str, Any] = {
    "device": "cpu",  # bit-for-bit equality is promised on the CPU
    "epochs": 3,
    "batch_size": 64,
    "seed": 11,
    "optimizer": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.01},
    "schedule": {"name": "cosine", "warmup_steps": 5},
    "validation": {"fraction": 0.2},
    "preprocessing": {"standardize": True},
    "early_stopping": {"patience": 5, "metric": "val_loss"},
    "log_every_steps": 1,
}


def assert_identical(a: TrainResult, b: TrainResult) -> None:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
    assert a.history == b.history
    assert a.metrics == b.metrics
    assert a.steps == b.steps


def data_for(
    spec: dict[str, Any], digits: Split, diabetes: Split
) -> tuple[np.ndarray, np.ndarray, int]:
    """Features, labels and a batch size that makes 18 steps per epoch."""
    if spec is CLASSIFIER:
        return digits.x_train, digits.y_train, 64
    return diabetes.x_train, diabetes.y_train, 16


@pytest.mark.parametrize("spec", [CLASSIFIER, REGRESSOR], ids=["classifier", "regressor"])
def test_resume_mid_epoch_from_step_checkpoint(
    spec: dict[str, Any], digits: Split, diabetes: Split
) -> None:
    x, y, batch_size = data_for(spec, digits, diabetes)
    config = {**CONFIG, "checkpoint_every_steps": 7, "batch_size": batch_size}
    steps_per_epoch = int(np.ceil(round(len(x) * 0.8) / batch_size))
    crash_at = steps_per_epoch + 12  # mid-way through the second epoch, after a checkpoint
    uninterrupted = train(spec, config, x, y)

    killed = CrashAfter(crash_at)
    with pytest.raises(Crash):
        train(spec, config, x, y, callbacks=killed)
    last = checkpoint_from_bytes(killed.stored[-1])
    assert last["global_step"] == (crash_at // 7) * 7
    assert 0 < last["step_in_epoch"] < steps_per_epoch
    assert last["epoch"] == 1

    resumed = train(spec, config, x, y, resume=last)
    assert_identical(uninterrupted, resumed)


def test_resume_from_epoch_checkpoint_after_a_crash(digits: Split) -> None:
    uninterrupted = train(CLASSIFIER, CONFIG, digits.x_train, digits.y_train)
    steps_per_epoch = int(np.ceil(len(digits.x_train) * 0.8 / 64))
    killed = CrashAfter(2 * steps_per_epoch + 3)
    with pytest.raises(Crash):
        train(CLASSIFIER, CONFIG, digits.x_train, digits.y_train, callbacks=killed)
    assert len(killed.stored) == 2  # one per completed epoch
    last = checkpoint_from_bytes(killed.stored[-1])
    assert (last["epoch"], last["step_in_epoch"]) == (2, 0)
    resumed = train(CLASSIFIER, CONFIG, digits.x_train, digits.y_train, resume=last)
    assert_identical(uninterrupted, resumed)


class StopAfter(BaseCallbacks):
    def __init__(self, steps: int):
        self.allowed = steps
        self.asked = 0
        self.saved: list[dict[str, Any]] = []

    def should_stop(self) -> bool:
        self.asked += 1
        return self.asked > self.allowed

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self.saved.append(state)


def test_cancelled_run_checkpoints_where_it_stopped_and_resumes_exactly(digits: Split) -> None:
    config = {**CONFIG, "early_stopping": None}
    uninterrupted = train(CLASSIFIER, config, digits.x_train, digits.y_train)
    stopper = StopAfter(25)
    cancelled = train(CLASSIFIER, config, digits.x_train, digits.y_train, callbacks=stopper)
    assert cancelled.cancelled
    assert cancelled.steps == 25
    last = stopper.saved[-1]
    assert last["global_step"] == 25
    # The dict handed out is a private copy: training on does not change it.
    resumed = train(
        CLASSIFIER,
        config,
        digits.x_train,
        digits.y_train,
        resume=checkpoint_from_bytes(checkpoint_to_bytes(last)),
    )
    assert_identical(uninterrupted, resumed)


def test_checkpoint_tensors_are_snapshots(digits: Split) -> None:
    saved: list[dict[str, Any]] = []

    class Keep(BaseCallbacks):
        def save_checkpoint(self, state: dict[str, Any]) -> None:
            saved.append(state)

    train(CLASSIFIER, {**CONFIG, "epochs": 2}, digits.x_train, digits.y_train, callbacks=Keep())
    first, second = saved
    assert not torch.equal(first["model"]["head.weight"], second["model"]["head.weight"])


def test_training_leaves_the_callers_rng_alone(iris: Split) -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    train(
        {"arch": "mlp", "input_shape": [4], "hidden": [8], "dropout": 0.5, "num_outputs": 3},
        {"epochs": 2},
        iris.x_train,
        iris.y_train,
    )
    assert torch.equal(torch.get_rng_state(), before)


def test_same_seed_same_weights_other_seed_other_weights(iris: Split) -> None:
    spec = {"arch": "mlp", "input_shape": [4], "hidden": [8], "dropout": 0.2, "num_outputs": 3}
    a = train(spec, {"epochs": 3, "seed": 1, "device": "cpu"}, iris.x_train, iris.y_train)
    b = train(spec, {"epochs": 3, "seed": 1, "device": "cpu"}, iris.x_train, iris.y_train)
    c = train(spec, {"epochs": 3, "seed": 2, "device": "cpu"}, iris.x_train, iris.y_train)
    assert torch.equal(a.model.head.weight, b.model.head.weight)
    assert not torch.equal(a.model.head.weight, c.model.head.weight)


def test_resume_with_another_spec_or_config_is_refused(iris: Split) -> None:
    spec = {"arch": "mlp", "input_shape": [4], "num_outputs": 3}
    saved: list[dict[str, Any]] = []

    class Keep(BaseCallbacks):
        def save_checkpoint(self, state: dict[str, Any]) -> None:
            saved.append(state)

    train(spec, {"epochs": 1}, iris.x_train, iris.y_train, callbacks=Keep())
    with pytest.raises(InvalidInput, match=r"resume: .* different spec"):
        train({**spec, "hidden": [4]}, {"epochs": 2}, iris.x_train, iris.y_train, resume=saved[0])
    with pytest.raises(InvalidInput, match=r"different config \(batch_size\)"):
        train(spec, {"epochs": 2, "batch_size": 8}, iris.x_train, iris.y_train, resume=saved[0])
    # More epochs is a continuation, not a different run.
    longer = train(spec, {"epochs": 2}, iris.x_train, iris.y_train, resume=saved[0])
    assert longer.epochs_run == 2


def test_epoch_order_is_a_pure_function_of_seed_and_epoch() -> None:
    assert torch.equal(epoch_order(3, 1, 50), epoch_order(3, 1, 50))
    assert not torch.equal(epoch_order(3, 1, 50), epoch_order(3, 2, 50))
    assert not torch.equal(epoch_order(3, 1, 50), epoch_order(4, 1, 50))
    assert sorted(epoch_order(3, 1, 50).tolist()) == list(range(50))
