"""The recorded transform: fitted on training rows, applied the same way later."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modelyard.errors import InvalidInput
from modelyard.nn import parse_spec
from modelyard.training import Objective, Preprocessor, parse_config, row_shape_fits


def make(
    spec: dict[str, object], preprocessing: dict[str, object], loss: str | None = None
) -> Preprocessor:
    parsed = parse_spec(spec)
    config = parse_config({"preprocessing": preprocessing, **({"loss": loss} if loss else {})})
    return Preprocessor.for_training(
        parsed, config.preprocessing, Objective.resolve(parsed, config)
    )


def test_standardize_uses_training_rows_only_and_survives_json() -> None:
    x = np.array([[0.0, 10.0], [2.0, 10.0], [100.0, -5.0]], dtype=np.float32)
    pre = make({"arch": "mlp", "input_shape": [2], "num_outputs": 2}, {"standardize": True})
    pre.fit(x, np.array([0, 1, 1]), rows=np.array([0, 1]))
    assert pre.mean == pytest.approx([1.0, 10.0])
    # The constant column keeps std 1 instead of dividing by zero.
    assert pre.std == pytest.approx([1.0, 1.0])
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert torch.equal(again.apply(x), pre.apply(x))
    assert again.apply(x)[:, 0].tolist() == pytest.approx([-1.0, 1.0, 99.0])


def test_scale_then_standardize_per_channel() -> None:
    generator = np.random.default_rng(0)
    x = generator.uniform(0, 255, size=(50, 2, 4, 4)).astype(np.float32)
    x[:, 1] += 255
    spec = {"arch": "cnn", "input_shape": [2, 4, 4], "conv": [{"channels": 2}], "num_outputs": 2}
    pre = make(spec, {"scale": 1 / 255, "standardize": True}).fit(x, np.zeros(50, dtype=np.int64))
    assert pre.stats_shape == [2, 1, 1]
    out = pre.apply(x)
    assert out.mean(dim=(0, 2, 3)).tolist() == pytest.approx([0.0, 0.0], abs=1e-4)
    assert out.std(dim=(0, 2, 3), unbiased=False).tolist() == pytest.approx([1.0, 1.0], abs=1e-3)


def test_flat_rows_are_reshaped_and_wrong_rows_refused() -> None:
    pre = make({"arch": "cnn", "input_shape": [1, 8, 8], "num_outputs": 10}, {})
    assert pre.apply(np.zeros((3, 64))).shape == (3, 1, 8, 8)
    assert pre.apply(np.zeros((3, 8, 8))).shape == (3, 1, 8, 8)
    with pytest.raises(InvalidInput, match=r"rows of shape \[60\] do not fit .* \[1, 8, 8\]"):
        pre.apply(np.zeros((3, 60)))
    assert row_shape_fits([64], [1, 8, 8])
    assert not row_shape_fits([8, 8], [4, 16])


def test_non_finite_inputs_are_refused() -> None:
    pre = make({"arch": "mlp", "input_shape": [2], "num_outputs": 2}, {})
    with pytest.raises(InvalidInput, match=r"NaN"):
        pre.apply(np.array([[1.0, np.nan]]))


def test_token_ids_are_checked_against_the_vocabulary() -> None:
    pre = make({"arch": "transformer", "input_shape": [3], "vocab_size": 5, "num_outputs": 2}, {})
    out = pre.apply(np.array([[0.0, 4.0, 2.0]]))
    assert out.dtype == torch.int64
    with pytest.raises(InvalidInput, match=r"token id 5 is outside \[0, 5\)"):
        pre.apply(np.array([[0, 5, 1]]))
    with pytest.raises(InvalidInput, match=r"whole numbers"):
        pre.apply(np.array([[0.5, 1, 1]]))


def test_token_ids_cannot_be_scaled() -> None:
    with pytest.raises(InvalidInput, match=r"config.preprocessing.scale"):
        make({"arch": "rnn", "input_shape": [3], "vocab_size": 5, "num_outputs": 2}, {"scale": 0.5})


def test_string_classes_encode_and_decode() -> None:
    pre = make({"arch": "mlp", "input_shape": [1], "num_outputs": 3}, {})
    labels = np.array(["cat", "dog", "ant", "dog"], dtype=object)
    pre.fit(np.zeros((4, 1)), labels)
    assert pre.classes == ["ant", "cat", "dog"]
    ids = pre.encode_labels(labels)
    assert ids.tolist() == [1, 2, 0, 2]
    assert pre.decode_labels(ids) == ["cat", "dog", "ant", "dog"]
    with pytest.raises(InvalidInput, match=r"'emu' is not one of the training classes"):
        pre.encode_labels(np.array(["emu"]))


def test_regression_targets_record_their_statistics() -> None:
    pre = make({"arch": "mlp", "input_shape": [1], "num_outputs": 1, "task": "regression"}, {})
    pre.fit(np.zeros((3, 1)), np.array([1.0, 2.0, 3.0]))
    assert pre.target_mean == pytest.approx([2.0])
    assert pre.target_std == pytest.approx([np.std([1.0, 2.0, 3.0])])
    assert pre.encode_labels(np.array([1.0, 2.0])).shape == (2, 1)
