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


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_metrics_are_the_same_however_many_batches_wait(batch_size: int) -> None:
    # A batch's sums wait as tensors (up to PENDING_BATCHES of them) and are added in order.
    generator = torch.Generator().manual_seed(0)
    outputs = torch.randn(600, 3, generator=generator)
    labels = torch.randint(0, 3, (600,), generator=generator)
    result = evaluate(
        Fixed(), outputs, labels, ["accuracy"], "cross_entropy", batch_size=batch_size
    )
    expected = torch.nn.functional.cross_entropy(outputs, labels).item()
    assert result["loss"] == pytest.approx(expected, rel=1e-6)
    assert result["accuracy"] == int((outputs.argmax(1) == labels).sum()) / 600
    targets = torch.randn(600, 2, generator=generator)
    predictions = torch.randn(600, 2, generator=generator)
    regression = evaluate(
        Fixed(), predictions, targets, ["mse", "mae"], "mse", batch_size=batch_size
    )
    assert regression["mse"] == pytest.approx(
        ((predictions - targets) ** 2).mean().item(), rel=1e-6
    )
    assert regression["mae"] == pytest.approx((predictions - targets).abs().mean().item(), rel=1e-6)
