"""Weights: safetensors with the spec in the metadata; mismatches name the tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from modelyard.errors import InvalidInput
from modelyard.nn import (
    SPEC_METADATA_KEY,
    build_model,
    check_weights,
    load_weights,
    parse_spec,
    read_weights,
    replace_head,
    save_weights,
    weights_from_bytes,
    weights_to_bytes,
)

SPEC = {"arch": "mlp", "input_shape": [4], "hidden": [8], "num_outputs": 3}


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_then_load_gives_the_same_model(tmp_path: Path) -> None:
    model = build_model(SPEC)
    path = tmp_path / "model.safetensors"
    save_weights(model, path, SPEC)
    loaded = load_weights(SPEC, path)
    assert same_weights(model, loaded)
    x = torch.randn(2, 4)
    assert torch.equal(model(x), loaded(x))


def test_spec_travels_in_the_metadata(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_weights(build_model(SPEC), path, SPEC)
    with safe_open(str(path), framework="pt") as handle:
        assert SPEC_METADATA_KEY in handle.metadata()
    state, spec = read_weights(path)
    assert spec == parse_spec(SPEC)
    assert set(state) == {
        "layers.0.linear.weight",
        "layers.0.linear.bias",
        "head.weight",
        "head.bias",
    }
    assert isinstance(load_weights(None, path), torch.nn.Module)


def test_load_without_any_spec_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bare.safetensors"
    save_weights(build_model(SPEC), path)
    with pytest.raises(InvalidInput, match=r"spec: none given"):
        load_weights(None, path)


def test_bytes_round_trip() -> None:
    model = build_model(SPEC)
    state, spec = weights_from_bytes(weights_to_bytes(model, SPEC))
    assert spec == parse_spec(SPEC)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_unreadable_file_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(InvalidInput, match=r"weights: not a readable safetensors file"):
        load_weights(SPEC, path)


def test_check_weights_names_missing_unexpected_and_misshaped() -> None:
    state = dict(build_model(SPEC).state_dict())
    del state["head.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["layers.0.linear.weight"] = torch.zeros(9, 4)
    with pytest.raises(InvalidInput) as caught:
        check_weights(SPEC, state)
    detail = caught.value.detail
    assert "missing head.bias" in detail
    assert "unexpected extra.weight" in detail
    assert "layers.0.linear.weight has shape [9, 4], the spec needs [8, 4]" in detail
    assert caught.value.extra["missing"] == ["head.bias"]


def test_check_weights_accepts_its_own_model_including_buffers() -> None:
    spec = {
        "arch": "cnn",
        "input_shape": [8, 8],
        "conv": [{"channels": 2, "batch_norm": True}],
        "num_outputs": 2,
    }
    check_weights(spec, build_model(spec).state_dict())


def test_check_weights_refuses_integer_weights() -> None:
    state = {k: v.long() for k, v in build_model(SPEC).state_dict().items()}
    with pytest.raises(InvalidInput, match=r"dtype torch.int64"):
        check_weights(SPEC, state)


def test_load_weights_of_another_spec_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_weights(build_model(SPEC), path, SPEC)
    with pytest.raises(InvalidInput, match=r"head.weight has shape"):
        load_weights({**SPEC, "num_outputs": 5}, path)


def test_replace_head_keeps_the_body_and_changes_the_output_size() -> None:
    model = build_model(SPEC)
    body_before = model.layers[0].linear.weight.clone()
    model, new_spec = replace_head(model, SPEC, 7)
    assert new_spec.num_outputs == 7
    assert model(torch.randn(2, 4)).shape == (2, 7)
    assert torch.equal(model.layers[0].linear.weight, body_before)
    check_weights(new_spec, model.state_dict())


def test_replace_head_validates_the_size() -> None:
    with pytest.raises(InvalidInput, match=r"spec.num_outputs: must be > 0"):
        replace_head(build_model(SPEC), SPEC, 0)
