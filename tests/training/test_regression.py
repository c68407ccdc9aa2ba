"""Regression: diabetes, l1, and targets standardized for training but not for serving."""

from __future__ import annotations

import numpy as np
import torch

from modelyard.training import Preprocessor, train

from .conftest import Split
from .helpers import held_out_metrics

SPEC = {"arch": "mlp", "input_shape": [10], "hidden": [16], "num_outputs": 1, "task": "regression"}
CONFIG = {
    "epochs": 15,
    "optimizer": {"name": "adam", "lr": 0.01},
    "preprocessing": {"standardize": True},
}


def test_diabetes_r2_above_0_3(diabetes: Split) -> None:
    result = train(SPEC, CONFIG, diabetes.x_train, diabetes.y_train)
    test = held_out_metrics(result, diabetes.x_test, diabetes.y_test, ["r2", "mae"], "mse")
    assert test["r2"] > 0.3
    assert set(result.metrics["train"]) == {"loss", "mse", "mae", "r2"}


def test_model_predicts_in_the_data_units(diabetes: Split) -> None:
    # Targets are ~150 on average; training standardizes them and folds the stats back
    # into the head, so the raw model output is already in those units.
    result = train(SPEC, CONFIG, diabetes.x_train, diabetes.y_train)
    assert result.preprocessing["standardize_target"] is True
    pre = Preprocessor.from_dict(result.preprocessing)
    with torch.no_grad():
        predictions = result.model(pre.apply(diabetes.x_test)).squeeze(1).numpy()
    assert abs(predictions.mean() - diabetes.y_test.mean()) < 25
    assert result.metrics["train"]["mse"] < float(np.var(diabetes.y_train))


def test_l1_loss_fits_a_linear_function() -> None:
    generator = np.random.default_rng(0)
    x = generator.normal(size=(600, 3)).astype(np.float32)
    y = x @ np.array([2.0, -1.0, 0.5], dtype=np.float32) + 3.0
    y = y + generator.laplace(scale=0.05, size=600).astype(np.float32)
    spec = {"arch": "mlp", "input_shape": [3], "num_outputs": 1}
    config = {
        "loss": "l1",
        "epochs": 30,
        "optimizer": {"name": "adam", "lr": 0.05},
        "metrics": ["mae", "r2"],
    }
    result = train(spec, config, x, y)
    assert result.metrics["train"]["r2"] > 0.98
    weight = result.model.head.weight.detach().squeeze(0)
    assert torch.allclose(weight, torch.tensor([2.0, -1.0, 0.5]), atol=0.1)
    assert abs(float(result.model.head.bias.detach()) - 3.0) < 0.1


def test_two_targets_at_once() -> None:
    generator = np.random.default_rng(1)
    x = generator.normal(size=(400, 4)).astype(np.float32)
    y = np.stack([x[:, 0] * 10 + 50, x[:, 1] - x[:, 2]], axis=1).astype(np.float32)
    spec = {"arch": "mlp", "input_shape": [4], "num_outputs": 2, "task": "regression"}
    result = train(spec, {"epochs": 30, "optimizer": {"name": "adam", "lr": 0.05}}, x, y)
    assert result.metrics["train"]["r2"] > 0.98
    assert len(result.preprocessing["target_mean"]) == 2


def test_standardize_target_can_be_turned_off(diabetes: Split) -> None:
    config = {**CONFIG, "epochs": 1, "preprocessing": {"standardize_target": False}}
    result = train(SPEC, config, diabetes.x_train, diabetes.y_train)
    assert result.preprocessing["target_mean"] is None
    assert result.preprocessing["standardize_target"] is False
