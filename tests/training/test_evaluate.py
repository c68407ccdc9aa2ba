"""evaluate() on prepared tensors; it leaves the model's mode and gradients alone."""

from __future__ import annotations

import pytest
import torch

from modelyard.errors import InvalidInput
from modelyard.training import evaluate


class Fixed(torch.nn.Module):
    """Returns its input as the outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def test_accuracy_and_loss_of_known_outputs() -> None:
    outputs = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1, 1, 1])
    model = Fixed().train()
    result = evaluate(model, outputs, labels, ["accuracy"], "cross_entropy", batch_size=3)
    assert result["accuracy"] == 0.75
    expected = torch.nn.functional.cross_entropy(outputs, labels).item()
    assert result["loss"] == pytest.approx(expected)
    assert model.training
    assert model.scale.grad is None


def test_regression_metrics_match_their_definitions() -> None:
    predictions = torch.tensor([[1.0], [2.0], [4.0]])
    targets = torch.tensor([1.0, 3.0, 3.0])
    result = evaluate(Fixed(), predictions, targets, ["mse", "mae", "rmse", "r2"], "mse")
    assert result["mse"] == pytest.approx(2 / 3)
    assert result["mae"] == pytest.approx(2 / 3)
    assert result["rmse"] == pytest.approx((2 / 3) ** 0.5)
    assert result["r2"] == pytest.approx(1 - 2 / (8 / 3))
    assert result["loss"] == pytest.approx(2 / 3)


def test_binary_accuracy_from_one_logit() -> None:
    logits = torch.tensor([[3.0], [-1.0], [0.5]])
    result = evaluate(Fixed(), logits, torch.tensor([1, 0, 0]), ["accuracy"], "bce")
    assert result["accuracy"] == pytest.approx(2 / 3)


def test_unknown_loss_names_the_field() -> None:
    with pytest.raises(InvalidInput, match=r"loss.name: must be one of"):
        evaluate(Fixed(), torch.zeros(1, 2), torch.tensor([0]), [], "hinge")
