"""Probabilities, top-k and labels from a classifier's scores."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.errors import InvalidInput
from modelyard.runtimes import postprocess

LOGITS = np.array([[1.0, 3.0, 2.0, 0.0], [0.5, -1.0, 0.5, 4.0]], dtype=np.float32)
NAMES = ["cat", "dog", "eel", "fox"]


def test_nothing_asked_returns_the_outputs_unchanged() -> None:
    out = postprocess({"output": LOGITS})
    assert list(out) == ["output"]
    assert out["output"] is LOGITS


def test_softmax_gives_rows_of_probabilities_in_the_scores_order() -> None:
    probs = postprocess({"output": LOGITS}, softmax=True)["probabilities"]
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    expected = np.exp(LOGITS[0]) / np.exp(LOGITS[0]).sum()
    np.testing.assert_allclose(probs[0], expected, rtol=1e-6)


def test_softmax_does_not_overflow_on_large_scores() -> None:
    probs = postprocess({"output": np.array([[1000.0, 0.0]])}, softmax=True)["probabilities"]
    np.testing.assert_allclose(probs, [[1.0, 0.0]])


def test_top_k_ranks_best_first_with_ties_by_column() -> None:
    out = postprocess({"output": LOGITS}, softmax=True, top_k=3, classes=NAMES)
    np.testing.assert_array_equal(out["top_k_indices"], [[1, 2, 0], [3, 0, 2]])
    np.testing.assert_allclose(
        out["top_k_scores"], np.take_along_axis(out["probabilities"], out["top_k_indices"], 1)
    )
    assert out["top_k_labels"].tolist() == [["dog", "eel", "cat"], ["fox", "cat", "eel"]]
    assert out["labels"].tolist() == ["dog", "fox"]
    assert out["labels"].dtype == object


def test_top_k_without_softmax_ranks_raw_scores_and_k_is_capped() -> None:
    out = postprocess({"output": LOGITS}, top_k=10)
    assert out["top_k_indices"].shape == (2, 4)
    np.testing.assert_array_equal(out["top_k_scores"][0], [3.0, 2.0, 1.0, 0.0])
    assert "probabilities" not in out


def test_integer_class_ids_stay_numbers() -> None:
    labels = postprocess({"output": LOGITS}, classes=[10, 11, 12, 13])["labels"]
    assert labels.tolist() == [11, 13]
    assert labels.dtype.kind == "i"


def test_a_single_output_column_is_a_binary_classifier() -> None:
    scores = np.array([[-2.0], [0.0], [3.0]], dtype=np.float32)
    out = postprocess({"output": scores}, softmax=True, classes=["no", "yes"])
    np.testing.assert_allclose(
        out["probabilities"][:, 0], 1 / (1 + np.exp(-scores[:, 0])), rtol=1e-6
    )
    assert out["labels"].tolist() == ["no", "no", "yes"]
    with pytest.raises(InvalidInput, match="single output column"):
        postprocess({"output": scores}, top_k=1)


def test_the_only_output_is_used_when_none_is_called_output() -> None:
    out = postprocess({"logits": LOGITS}, classes=NAMES)
    assert out["labels"].tolist() == ["dog", "fox"]


@pytest.mark.parametrize(
    ("outputs", "options", "message"),
    [
        ({"a": LOGITS, "b": LOGITS}, {"softmax": True}, r"needs an output named 'output'"),
        ({"output": LOGITS[0]}, {"softmax": True}, r"scores of shape \[N, C\]"),
        ({"output": LOGITS}, {"top_k": 0}, r"top_k: must be at least 1"),
        ({"output": LOGITS}, {"classes": ["a", "b"]}, r"classes: 2 given, .* 4 output columns"),
    ],
)
def test_requests_that_cannot_be_met_are_refused(
    outputs: dict[str, np.ndarray], options: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        postprocess(outputs, **options)  # type: ignore[arg-type]


def test_a_model_that_returns_probabilities_is_not_softmaxed_again() -> None:
    probs = np.array([[0.1, 0.6, 0.3], [0.7, 0.2, 0.1]], dtype=np.float32)
    out = postprocess(
        {"output": probs},
        softmax=True,
        top_k=2,
        classes=["a", "b", "c"],
        output_kind="probabilities",
    )
    np.testing.assert_array_equal(out["probabilities"], probs)
    np.testing.assert_array_equal(out["top_k_scores"], probs[[[0], [1]], [[1, 2], [0, 1]]])
    assert out["labels"].tolist() == ["b", "a"]


def test_a_sigmoid_head_is_read_as_probabilities_with_a_threshold_of_one_half() -> None:
    probs = np.array([[0.2], [0.5], [0.9]], dtype=np.float32)
    out = postprocess(
        {"output": probs}, softmax=True, classes=["no", "yes"], output_kind="binary_probabilities"
    )
    np.testing.assert_array_equal(out["probabilities"], probs)
    assert out["labels"].tolist() == ["no", "no", "yes"]
