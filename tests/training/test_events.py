"""Events, progress and cancellation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from modelyard.errors import InvalidInput
from modelyard.training import epoch_order, train

from .conftest import Split
from .helpers import Recorder

SPEC = {"arch": "mlp", "input_shape": [4], "hidden": [8], "num_outputs": 3}
REGRESSOR = {
    "arch": "mlp",
    "input_shape": [4],
    "hidden": [8],
    "num_outputs": 1,
    "task": "regression",
}


def test_step_and_epoch_events(iris: Split) -> None:
    events = Recorder()
    config = {"epochs": 3, "batch_size": 10, "log_every_steps": 4, "validation": {"fraction": 0.25}}
    result = train(SPEC, config, iris.x_train, iris.y_train, callbacks=events)
    steps = events.of_type("step")
    assert [e["step"] for e in steps] == list(range(4, result.steps + 1, 4))
    for event in steps:
        assert set(event) == {"type", "epoch", "step", "loss", "lr", "samples_per_s"}
        assert event["loss"] > 0
        assert event["samples_per_s"] > 0
    epochs = events.of_type("epoch")
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert [e["progress"] for e in epochs] == [1 / 3, 2 / 3, 1.0]
    assert epochs[-1]["eta_s"] == 0.0
    assert set(epochs[0]["train"]) == set(epochs[0]["val"]) == {"loss", "accuracy"}
    assert [e["train"] for e in epochs] == [h["train"] for h in result.history]
    json.dumps(events.events)  # events are JSON-able as they are


def test_schedule_shows_in_the_events(iris: Split) -> None:
    events = Recorder()
    config = {
        "epochs": 4,
        "batch_size": 30,
        "log_every_steps": 1,
        "optimizer": {"name": "sgd", "lr": 0.1},
        "schedule": {"name": "step", "step_size": 2, "gamma": 0.5},
    }
    train(SPEC, config, iris.x_train, iris.y_train, callbacks=events)
    rates = {e["epoch"]: e["lr"] for e in events.of_type("step")}
    assert rates == {1: 0.1, 2: 0.1, 3: 0.05, 4: 0.05}


def test_should_stop_cancels_before_the_next_step(iris: Split) -> None:
    class StopNow(Recorder):
        def should_stop(self) -> bool:
            return True

    callbacks = StopNow()
    result = train(SPEC, {"epochs": 100}, iris.x_train, iris.y_train, callbacks=callbacks)
    assert result.cancelled
    assert result.steps == 0
    assert result.epochs_run == 0
    assert len(callbacks.checkpoints) == 1


def test_a_loss_that_is_not_finite_fails_naming_its_step_before_reporting_past_it(
    iris: Split,
) -> None:
    # The loop reads its losses only at step events, checkpoints and epoch ends; a loss that
    # is not finite still ends the run naming its own step, before anything reports a later one.
    x = iris.x_train.copy()
    x[0] = 3e38  # finite, but its outputs are so large that their squared error overflows
    batch = 10
    bad_step = int((epoch_order(0, 0, len(x)) == 0).nonzero()) // batch  # 0-based
    config = {"epochs": 2, "batch_size": batch, "log_every_steps": 4, "checkpoint_every_steps": 3}
    events = Recorder()
    with pytest.raises(InvalidInput, match=rf"the loss became (nan|inf) at step {bad_step};"):
        train(REGRESSOR, config, x, iris.y_train.astype(np.float32), callbacks=events)
    # Steps count from 1 in events and checkpoints: none reports the bad step or a later one.
    assert all(e["step"] <= bad_step for e in events.events)
    assert all(c["global_step"] <= bad_step for c in events.checkpoints)
    assert all(math.isfinite(e["loss"]) for e in events.of_type("step"))
