"""Events, progress and cancellation."""

from __future__ import annotations

import json

from modelyard.training import train

from .conftest import Split
from .helpers import Recorder

SPEC = {"arch": "mlp", "input_shape": [4], "hidden": [8], "num_outputs": 3}


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
