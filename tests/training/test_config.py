"""TrainConfig parsing and the objective it resolves to."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.errors import InvalidInput
from modelyard.nn import parse_spec
from modelyard.training import Objective, TrainConfig, parse_config

CLASSIFIER = parse_spec({"arch": "mlp", "input_shape": [4], "num_outputs": 3})


def test_names_stand_for_sections() -> None:
    config = parse_config({"loss": "l1", "optimizer": "sgd", "schedule": "cosine"})
    assert config.loss is not None
    assert config.loss.name == "l1"
    assert config.optimizer.name == "sgd"
    assert config.schedule.name == "cosine"


def test_defaults() -> None:
    config = parse_config({})
    assert config == TrainConfig()
    assert (config.optimizer.name, config.epochs, config.batch_size, config.device) == (
        "adam",
        10,
        32,
        "auto",
    )


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"epochs": 0}, "config.epochs"),
        ({"batch_size": -1}, "config.batch_size"),
        ({"optimizer": {"lr": 0}}, "config.optimizer.lr"),
        ({"optimizer": {"name": "lbfgs"}}, "config.optimizer.name"),
        ({"optimizer": {"name": "adam", "momentum": 0.9}}, "config.optimizer.momentum"),
        ({"optimizer": {"name": "sgd", "nesterov": True}}, "config.optimizer.nesterov"),
        ({"optimizer": {"betas": [0.9, 1.5]}}, "config.optimizer.betas[1]"),
        ({"loss": {"name": "mse", "label_smoothing": 0.1}}, "config.loss.label_smoothing"),
        ({"loss": "hinge"}, "config.loss.name"),
        ({"schedule": {"name": "step", "gamma": 0}}, "config.schedule.gamma"),
        ({"validation": {"fraction": 1.0}}, "config.validation.fraction"),
        ({"early_stopping": {"metric": "loss"}}, "config.early_stopping.metric"),
        ({"early_stopping": {"patience": 0}}, "config.early_stopping.patience"),
        ({"metrics": ["f1"]}, "config.metrics[0]"),
        ({"device": "tpu"}, "config.device"),
        ({"preprocessing": {"scale": 0}}, "config.preprocessing.scale"),
        ({"freeze": ["layers", " "]}, "config.freeze"),
        ({"learning_rate": 0.1}, "config.learning_rate"),
    ],
)
def test_invalid_config_names_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_config(raw)
    assert caught.value.detail.startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("spec", "config", "expected"),
    [
        ({"num_outputs": 3}, {}, ("classification", "cross_entropy", False, ("accuracy",))),
        ({"num_outputs": 1}, {}, ("classification", "bce", False, ("accuracy",))),
        ({"num_outputs": 1}, {"loss": "mse"}, ("regression", "mse", False, ("mse", "mae", "r2"))),
        (
            {"num_outputs": 3, "task": "classification"},
            {"loss": "mse"},
            ("classification", "mse", True, ("accuracy",)),
        ),
        (
            {"num_outputs": 2, "task": "regression"},
            {"metrics": ["rmse"]},
            ("regression", "mse", False, ("rmse",)),
        ),
        ({"num_outputs": 4}, {"loss": "bce"}, ("classification", "bce", True, ("accuracy",))),
    ],
)
def test_objective_follows_task_and_loss(
    spec: dict[str, Any], config: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    parsed = parse_spec({"arch": "mlp", "input_shape": [4], **spec})
    objective = Objective.resolve(parsed, parse_config(config))
    assert (objective.task, objective.loss.name, objective.one_hot, objective.metrics) == expected


@pytest.mark.parametrize(
    ("spec", "config", "message"),
    [
        (
            {"num_outputs": 1, "task": "regression"},
            {"loss": "bce"},
            "config.loss: bce is a classification loss",
        ),
        (
            {"num_outputs": 1},
            {"loss": "cross_entropy"},
            "spec.num_outputs: cross_entropy needs at least 2",
        ),
        (
            {"num_outputs": 3},
            {"metrics": ["r2"]},
            "config.metrics[0]: r2 does not apply to classification",
        ),
        (
            {"num_outputs": 3, "task": "classification"},
            {"loss": "mse", "preprocessing": {"one_hot": False}},
            "config.preprocessing.one_hot",
        ),
        (
            {"num_outputs": 1, "task": "regression"},
            {"preprocessing": {"one_hot": True}},
            "config.preprocessing.one_hot: only class labels",
        ),
        (
            {"num_outputs": 3},
            {"preprocessing": {"standardize_target": True}},
            "config.preprocessing.standardize_target",
        ),
    ],
)
def test_contradictions_name_the_field(
    spec: dict[str, Any], config: dict[str, Any], message: str
) -> None:
    parsed = parse_spec({"arch": "mlp", "input_shape": [4], **spec})
    with pytest.raises(InvalidInput) as caught:
        Objective.resolve(parsed, parse_config(config))
    assert caught.value.detail.startswith(message)
