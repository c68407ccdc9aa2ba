"""A version's outputs, logits or probabilities, turned into logits for losses and back."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from modelyard.errors import InvalidInput
from modelyard.runtimes.outputs import PROBABILITY_FLOOR, as_logits, output_kind


def test_probabilities_become_logits_with_the_same_softmax() -> None:
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0)) * 3
    probabilities = F.softmax(logits, dim=1)
    recovered = as_logits(probabilities, "probabilities")
    torch.testing.assert_close(F.softmax(recovered, dim=1), probabilities)
    labels = torch.tensor([0, 1, 2, 3, 0])
    torch.testing.assert_close(F.cross_entropy(recovered, labels), F.cross_entropy(logits, labels))
    assert as_logits(logits, "logits") is logits


def test_binary_probabilities_become_their_log_odds() -> None:
    logits = torch.tensor([[-3.0], [0.0], [2.5]])
    torch.testing.assert_close(as_logits(torch.sigmoid(logits), "binary_probabilities"), logits)


def test_certain_wrong_answers_cost_a_finite_loss() -> None:
    certain = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = F.cross_entropy(as_logits(certain, "probabilities"), torch.tensor([1, 1]))
    # Half the rows are certain and wrong: each costs -log(floor), as in Keras.
    expected = -torch.log(torch.tensor(PROBABILITY_FLOOR)) / 2
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)


def test_params_record_the_kind_and_an_unknown_one_is_refused() -> None:
    assert output_kind({}) == "logits"
    assert output_kind(None) == "logits"
    assert output_kind({"outputs": "probabilities"}) == "probabilities"
    with pytest.raises(InvalidInput, match=r"params\.outputs"):
        output_kind({"outputs": "softmax"})
