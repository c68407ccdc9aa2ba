"""Fine-tuning: start from weights, freeze prefixes, replace the head."""

from __future__ import annotations

import pytest
import torch

from modelyard.errors import InvalidInput
from modelyard.nn import build_model, replace_head
from modelyard.training import train

from .conftest import Split
from .helpers import held_out_metrics, state_of

BASE = {"arch": "mlp", "input_shape": [64], "hidden": [64, 32], "num_outputs": 5}
CONFIG = {
    "epochs": 6,
    "optimizer": {"name": "adam", "lr": 3e-3},
    "preprocessing": {"scale": 1 / 16},
}


@pytest.fixture(scope="module")
def base_model(digits: Split) -> dict[str, torch.Tensor]:
    """Weights of a model trained on digits 0-4 only."""
    keep = digits.y_train < 5
    result = train(BASE, CONFIG, digits.x_train[keep], digits.y_train[keep])
    return state_of(result.model)


def test_frozen_prefix_keeps_its_weights_and_new_head_has_new_size(
    digits: Split, base_model: dict[str, torch.Tensor]
) -> None:
    spec = {**BASE, "num_outputs": 10}
    config = {**CONFIG, "freeze": ["layers.0"], "replace_head": True}
    result = train(spec, config, digits.x_train, digits.y_train, init_weights=base_model)
    after = result.model.state_dict()
    assert torch.equal(after["layers.0.linear.weight"], base_model["layers.0.linear.weight"])
    assert torch.equal(after["layers.0.linear.bias"], base_model["layers.0.linear.bias"])
    assert not torch.equal(after["layers.1.linear.weight"], base_model["layers.1.linear.weight"])
    assert after["head.weight"].shape == (10, 32)
    test = held_out_metrics(result, digits.x_test, digits.y_test, ["accuracy"], "cross_entropy")
    assert test["accuracy"] >= 0.8  # digits 5-9 were never seen by the frozen layer


def test_starting_from_weights_starts_ahead(
    digits: Split, base_model: dict[str, torch.Tensor]
) -> None:
    keep = digits.y_train < 5
    config = {**CONFIG, "epochs": 1, "optimizer": {"name": "adam", "lr": 1e-4}}
    fresh = train(BASE, config, digits.x_train[keep], digits.y_train[keep])
    tuned = train(BASE, config, digits.x_train[keep], digits.y_train[keep], init_weights=base_model)
    assert tuned.history[0]["train"]["loss"] < fresh.history[0]["train"]["loss"] / 3


def test_freezing_everything_is_refused(iris: Split) -> None:
    spec = {"arch": "mlp", "input_shape": [4], "num_outputs": 3}
    with pytest.raises(InvalidInput, match=r"config.freeze: every parameter is frozen"):
        train(spec, {"freeze": ["head"]}, iris.x_train, iris.y_train)


def test_freeze_prefix_must_match_a_parameter(iris: Split) -> None:
    spec = {"arch": "mlp", "input_shape": [4], "num_outputs": 3}
    with pytest.raises(InvalidInput, match=r"config.freeze\[0\]: 'encoder' matches no parameter"):
        train(spec, {"freeze": ["encoder"]}, iris.x_train, iris.y_train)


def test_weights_of_another_shape_are_refused_naming_the_tensor(
    digits: Split, base_model: dict[str, torch.Tensor]
) -> None:
    with pytest.raises(InvalidInput, match=r"head.weight has shape"):
        train(
            {**BASE, "num_outputs": 10},
            CONFIG,
            digits.x_train,
            digits.y_train,
            init_weights=base_model,
        )


def test_frozen_batch_norm_keeps_its_statistics(digits: Split) -> None:
    spec = {
        "arch": "cnn",
        "input_shape": [8, 8],
        "conv": [{"channels": 4, "batch_norm": True}],
        "num_outputs": 10,
    }
    start = state_of(build_model(spec))
    result = train(
        spec,
        {"epochs": 1, "freeze": ["features"]},
        digits.x_train,
        digits.y_train,
        init_weights=start,
    )
    after = result.model.state_dict()
    for name in (
        "features.0.norm.running_mean",
        "features.0.norm.running_var",
        "features.0.conv.weight",
    ):
        assert torch.equal(after[name], start[name]), name


def test_regression_fine_tune_continues_in_the_data_units(diabetes: Split) -> None:
    spec = {
        "arch": "mlp",
        "input_shape": [10],
        "hidden": [16],
        "num_outputs": 1,
        "task": "regression",
    }
    config = {
        "epochs": 15,
        "optimizer": {"name": "adam", "lr": 0.01},
        "preprocessing": {"standardize": True},
    }
    parent = train(spec, config, diabetes.x_train, diabetes.y_train)
    again = {**config, "epochs": 1, "optimizer": {"name": "adam", "lr": 1e-5}}
    child = train(
        spec, again, diabetes.x_train, diabetes.y_train, init_weights=state_of(parent.model)
    )
    # With a tiny learning rate the child is as good as its parent from the first epoch.
    assert child.metrics["train"]["r2"] == pytest.approx(parent.metrics["train"]["r2"], abs=0.02)


def test_nn_replace_head_then_train(iris: Split) -> None:
    spec = {"arch": "mlp", "input_shape": [4], "hidden": [8], "num_outputs": 2}
    model, new_spec = replace_head(build_model(spec), spec, 3)
    result = train(
        new_spec, {"epochs": 2}, iris.x_train, iris.y_train, init_weights=model.state_dict()
    )
    assert result.model(torch.zeros(1, 4)).shape == (1, 3)
