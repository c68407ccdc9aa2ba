"""Classification on real data: digits (MLP, CNN), iris, breast cancer (bce)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from modelyard.training import train

from .conftest import Split
from .helpers import held_out_metrics


def test_digits_mlp_reaches_95_percent(digits: Split) -> None:
    spec = {"arch": "mlp", "input_shape": [64], "hidden": [128], "num_outputs": 10}
    config = {
        "epochs": 12,
        "batch_size": 32,
        "optimizer": {"name": "adam", "lr": 3e-3},
        "preprocessing": {"standardize": True},
    }
    result = train(spec, config, digits.x_train, digits.y_train)
    test = held_out_metrics(result, digits.x_test, digits.y_test, ["accuracy"], "cross_entropy")
    assert test["accuracy"] >= 0.95
    assert result.metrics["train"]["accuracy"] >= test["accuracy"] - 0.05
    assert result.epochs_run == 12
    assert result.steps == 12 * int(np.ceil(len(digits.x_train) / 32))


def test_digits_cnn_reaches_95_percent_from_flat_rows(digits: Split) -> None:
    # The rows are 64 flat pixels; the spec's [1, 8, 8] makes them images.
    spec = {
        "arch": "cnn",
        "input_shape": [1, 8, 8],
        "conv": [{"channels": 16}, {"channels": 32}],
        "num_outputs": 10,
    }
    config = {
        "epochs": 8,
        "optimizer": {"name": "adam", "lr": 3e-3},
        "preprocessing": {"standardize": True},
    }
    result = train(spec, config, digits.x_train, digits.y_train)
    test = held_out_metrics(result, digits.x_test, digits.y_test, ["accuracy"], "cross_entropy")
    assert test["accuracy"] >= 0.95
    # Per-channel statistics: one mean and one std for the single channel.
    assert result.preprocessing["stats_shape"] == [1, 1, 1]
    assert len(result.preprocessing["mean"]) == 1


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
        {"name": "adam", "lr": 0.01},
        {"name": "adamw", "lr": 0.01, "weight_decay": 0.01},
        {"name": "rmsprop", "lr": 0.003},
    ],
    ids=lambda o: o["name"] + ("-nesterov" if o.get("nesterov") else ""),
)
def test_iris_with_each_optimizer(iris: Split, optimizer: dict[str, object]) -> None:
    spec = {"arch": "mlp", "input_shape": [4], "hidden": [16], "num_outputs": 3}
    config = {
        "epochs": 40,
        "batch_size": 16,
        "optimizer": optimizer,
        "preprocessing": {"standardize": True},
    }
    result = train(spec, config, iris.x_train, iris.y_train)
    test = held_out_metrics(result, iris.x_test, iris.y_test, ["accuracy"], "cross_entropy")
    assert test["accuracy"] >= 0.85


def test_full_batch_gradient_descent_takes_one_step_per_epoch(iris: Split) -> None:
    spec = {"arch": "mlp", "input_shape": [4], "hidden": [16], "num_outputs": 3}
    config = {
        "epochs": 150,
        "batch_size": None,
        "optimizer": {"name": "sgd", "lr": 0.5},
        "preprocessing": {"standardize": True},
    }
    result = train(spec, config, iris.x_train, iris.y_train)
    assert result.steps == 150
    losses = [entry["train"]["loss"] for entry in result.history]
    assert losses[-1] < losses[0] / 3
    test = held_out_metrics(result, iris.x_test, iris.y_test, ["accuracy"], "cross_entropy")
    assert test["accuracy"] >= 0.85


def test_batch_larger_than_the_data_is_full_batch(iris: Split) -> None:
    config = {"epochs": 3, "batch_size": 10_000, "optimizer": {"name": "sgd", "lr": 0.1}}
    spec = {"arch": "mlp", "input_shape": [4], "num_outputs": 3}
    assert train(spec, config, iris.x_train, iris.y_train).steps == 3


def test_binary_bce_with_one_output() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    spec = {"arch": "mlp", "input_shape": [30], "hidden": [16], "num_outputs": 1}
    config = {
        "loss": "bce",
        "epochs": 10,
        "optimizer": {"name": "adam", "lr": 3e-3},
        "preprocessing": {"standardize": True},
    }
    result = train(spec, config, x_train, y_train)
    test = held_out_metrics(result, x_test, y_test, ["accuracy"], "bce")
    assert test["accuracy"] >= 0.9


def test_bce_over_ten_classes_one_hots_the_labels(digits: Split) -> None:
    spec = {"arch": "mlp", "input_shape": [64], "hidden": [64], "num_outputs": 10}
    config = {
        "loss": "bce",
        "epochs": 8,
        "optimizer": {"name": "adam", "lr": 3e-3},
        "preprocessing": {"scale": 1 / 16},
    }
    result = train(spec, config, digits.x_train, digits.y_train)
    assert result.preprocessing["one_hot"] is True
    test = held_out_metrics(result, digits.x_test, digits.y_test, ["accuracy"], "bce")
    assert test["accuracy"] >= 0.9


def test_mse_on_one_hot_labels_for_classification(iris: Split) -> None:
    spec = {
        "arch": "mlp",
        "input_shape": [4],
        "hidden": [16],
        "num_outputs": 3,
        "task": "classification",
    }
    config = {
        "loss": "mse",
        "epochs": 60,
        "batch_size": 16,
        "optimizer": {"name": "adam", "lr": 0.01},
        "preprocessing": {"standardize": True},
    }
    result = train(spec, config, iris.x_train, iris.y_train)
    assert result.preprocessing["one_hot"] is True
    assert result.metrics["train"]["accuracy"] >= 0.85


def test_label_smoothing_is_applied(iris: Split) -> None:
    spec = {"arch": "mlp", "input_shape": [4], "hidden": [16], "num_outputs": 3}
    base = {
        "epochs": 30,
        "optimizer": {"name": "adam", "lr": 0.01},
        "preprocessing": {"standardize": True},
    }
    plain = train(spec, base, iris.x_train, iris.y_train)
    smooth = train(
        spec,
        {**base, "loss": {"name": "cross_entropy", "label_smoothing": 0.3}},
        iris.x_train,
        iris.y_train,
    )
    # Smoothed targets keep the loss away from zero even when the predictions are right.
    assert smooth.metrics["train"]["loss"] > plain.metrics["train"]["loss"] + 0.1
    assert smooth.metrics["train"]["accuracy"] >= 0.85


def test_string_labels_become_classes(iris: Split) -> None:
    names = np.array(["setosa", "versicolor", "virginica"])[iris.y_train]
    spec = {"arch": "mlp", "input_shape": [4], "hidden": [16], "num_outputs": 3}
    config = {
        "epochs": 30,
        "optimizer": {"name": "adam", "lr": 0.01},
        "preprocessing": {"standardize": True},
    }
    result = train(spec, config, iris.x_train, names)
    assert result.preprocessing["classes"] == ["setosa", "versicolor", "virginica"]
    assert result.metrics["train"]["accuracy"] >= 0.85
