"""Early stopping ends a run that stops improving and restores the best epoch."""

from __future__ import annotations

import pytest

from modelyard.errors import InvalidInput
from modelyard.training import train

from .conftest import Split
from .helpers import Recorder

SPEC = {"arch": "mlp", "input_shape": [64], "hidden": [256], "num_outputs": 10}


def test_stops_when_validation_loss_stops_improving(digits: Split) -> None:
    # A large learning rate on a small split overfits within a few epochs.
    config = {
        "epochs": 60,
        "optimizer": {"name": "adam", "lr": 0.01},
        "validation": {"fraction": 0.2},
        "preprocessing": {"scale": 1 / 16},
        "early_stopping": {"patience": 2, "metric": "val_loss"},
    }
    events = Recorder()
    result = train(SPEC, config, digits.x_train, digits.y_train, callbacks=events)
    assert result.stopped_early
    assert result.epochs_run < 60
    assert result.best is not None
    best_epoch = result.best["epoch"]
    assert result.epochs_run == best_epoch + 2
    val_losses = [entry["val"]["loss"] for entry in result.history]
    assert min(val_losses) == val_losses[best_epoch - 1] == result.best["value"]
    # restore_best: the final model is the best epoch's.
    assert result.metrics["val"]["loss"] == pytest.approx(result.best["value"], rel=1e-6)
    assert events.of_type("early_stop")[0]["best"]["epoch"] == best_epoch


def test_max_mode_on_accuracy_and_min_delta(digits: Split) -> None:
    config = {
        "epochs": 30,
        "optimizer": {"name": "adam", "lr": 3e-3},
        "validation": {"fraction": 0.2},
        "preprocessing": {"scale": 1 / 16},
        # No epoch can beat the first by a whole 100 points of accuracy.
        "early_stopping": {"patience": 3, "metric": "val_accuracy", "min_delta": 1.0},
    }
    result = train(SPEC, config, digits.x_train, digits.y_train)
    assert result.stopped_early
    assert result.epochs_run == 4
    assert result.best == {
        "metric": "val_accuracy",
        "value": result.history[0]["val"]["accuracy"],
        "epoch": 1,
    }


def test_validation_metric_without_validation_data_is_refused(iris: Split) -> None:
    config = {"early_stopping": {"metric": "val_loss"}}
    spec = {"arch": "mlp", "input_shape": [4], "num_outputs": 3}
    with pytest.raises(
        InvalidInput, match=r"config.early_stopping.metric: val_loss needs validation"
    ):
        train(spec, config, iris.x_train, iris.y_train)


def test_metric_must_be_tracked(iris: Split) -> None:
    config = {"early_stopping": {"metric": "val_r2"}, "validation": {"fraction": 0.2}}
    spec = {"arch": "mlp", "input_shape": [4], "num_outputs": 3}
    with pytest.raises(InvalidInput, match=r"config.early_stopping.metric: r2 is not among"):
        train(spec, config, iris.x_train, iris.y_train)


def test_train_metric_and_explicit_validation_set(iris: Split) -> None:
    config = {
        "epochs": 50,
        "optimizer": {"name": "sgd", "lr": 1e-9},
        "early_stopping": {"patience": 2, "metric": "train_loss", "min_delta": 0.1},
    }
    spec = {"arch": "mlp", "input_shape": [4], "num_outputs": 3}
    result = train(spec, config, iris.x_train, iris.y_train, x_val=iris.x_test, y_val=iris.y_test)
    assert result.stopped_early
    assert result.epochs_run == 3
    assert set(result.metrics["val"]) == {"loss", "accuracy"}
