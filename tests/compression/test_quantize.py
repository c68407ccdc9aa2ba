"""Quantization with torchao (by name): sizes, accuracy, the stored layout and its restoration."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from modelyard.compression import (
    check_compressed_weights,
    compress,
    measure,
    parse_method,
    restore_model,
)
from modelyard.compression.quantize import (
    choose_modules,
    pack_int4,
    pack_state,
    quantize_model,
    unpack_int4,
)
from modelyard.compression.recurrent import UnrolledRecurrent
from modelyard.errors import InvalidInput
from modelyard.nn import build_model
from tests.compression.conftest import MLP, Trained, accuracy


def test_dynamic_int8_mlp_is_3_5x_smaller_and_loses_at_most_a_point(
    mlp: Trained, tmp_path: Path
) -> None:
    method = parse_method({"name": "quantize", "scheme": "dynamic_int8", "backend": "torchao"})
    child = compress(method, mlp.source, mlp.data, tmp_path)
    data = mlp.data
    parent = measure(mlp.fresh(), mlp.source.path, data.x_eval, data.y_eval, data.objective)
    quantized = measure(child.module, child.artifact, data.x_eval, data.y_eval, data.objective)
    assert parent["weight_bytes"] / quantized["weight_bytes"] >= 3.5
    assert parent["size_bytes"] / quantized["size_bytes"] >= 3.5
    assert parent["metrics"]["accuracy"] - quantized["metrics"]["accuracy"] <= 0.01
    assert child.compression == {
        "method": "quantize",
        "scheme": "dynamic_int8",
        "backend": "torchao",
        "modules": ["head", "layers.0.linear", "layers.1.linear"],
        "unrolled": [],
    }

    state = load_file(str(child.artifact))
    assert state["layers.0.linear.weight"].dtype == torch.int8
    assert state["layers.0.linear.weight_scale"].shape == (128, 1)
    restored = restore_model(MLP, child.compression, state)
    with torch.no_grad():
        assert torch.equal(restored(data.x_eval), child.module(data.x_eval))
    assert check_compressed_weights(MLP, child.artifact, child.compression)["inputs"][0][
        "shape"
    ] == [-1, 64]


@pytest.mark.parametrize("scheme", ["weight_int8", "weight_int4"])
def test_weight_only_schemes_keep_accuracy_and_restore_exactly(
    mlp: Trained, tmp_path: Path, scheme: str
) -> None:
    child = compress(
        parse_method({"name": "quantize", "scheme": scheme}), mlp.source, mlp.data, tmp_path
    )
    assert accuracy(mlp.fresh(), mlp.data) - accuracy(child.module, mlp.data) <= 0.01
    state = load_file(str(child.artifact))
    expected = torch.uint8 if scheme == "weight_int4" else torch.int8
    assert state["layers.1.linear.weight"].dtype == expected
    restored = restore_model(MLP, child.compression or {}, state)
    with torch.no_grad():
        assert torch.equal(restored(mlp.data.x_eval), child.module(mlp.data.x_eval))
    if scheme == "weight_int4":
        # Two 4-bit values per byte plus one float scale per 32 weights.
        assert state["layers.1.linear.weight"].shape == (128, 64)
        assert child.artifact.stat().st_size < 0.2 * mlp.source.path.stat().st_size


def test_int4_packing_round_trips() -> None:
    values = torch.arange(-8, 8, dtype=torch.int8).repeat(3, 2)
    packed = pack_int4(values)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 16)
    assert torch.equal(unpack_int4(packed), values)


@pytest.mark.parametrize(
    ("cell", "layers", "bidirectional"),
    [("lstm", 2, True), ("gru", 1, False), ("rnn", 2, False), ("gru", 1, True)],
)
def test_unrolled_recurrent_layers_compute_what_the_fused_ones_do(
    cell: str, layers: int, bidirectional: bool
) -> None:
    torch.manual_seed(0)
    fused = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](
        6, 5, num_layers=layers, batch_first=True, bidirectional=bidirectional
    )
    unrolled = UnrolledRecurrent.from_module(fused)
    x = torch.randn(3, 7, 6)
    with torch.no_grad():
        want_out, want_state = fused(x)
        got_out, got_state = unrolled(x)
    torch.testing.assert_close(got_out, want_out, atol=1e-5, rtol=1e-5)
    if cell == "lstm":
        assert isinstance(want_state, tuple) and isinstance(got_state, tuple)
        torch.testing.assert_close(got_state[0], want_state[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_state[1], want_state[1], atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(got_state, want_state, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_dynamic_int8_reaches_recurrent_layers(cell: str, tmp_path: Path) -> None:
    spec = {
        "arch": "rnn",
        "cell": cell,
        "input_shape": [8, 8],
        "hidden_size": 32,
        "bidirectional": True,
        "num_outputs": 10,
    }
    torch.manual_seed(0)
    model = build_model(spec).eval()
    x = torch.randn(16, 8, 8)
    with torch.no_grad():
        reference = model(x)
    modules = choose_modules(model, "dynamic_int8", None)
    assert modules == {"rnn": "recurrent", "head": "linear"}
    compression = quantize_model(model, "dynamic_int8", modules)
    assert compression["unrolled"] == ["rnn"]
    assert "rnn.cells.1.hh" in compression["modules"]
    with torch.no_grad():
        quantized = model(x)
    assert float((quantized - reference).abs().max()) < 0.05
    state = pack_state(model)
    assert state["rnn.cells.0.ih.weight"].dtype == torch.int8
    path = tmp_path / "rnn.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    check_compressed_weights(spec, path, compression)
    restored = restore_model(spec, compression, load_file(str(path)))
    with torch.no_grad():
        assert torch.equal(restored(x), quantized)


def test_the_weights_check_refuses_what_does_not_fit(mlp: Trained, tmp_path: Path) -> None:
    method = parse_method({"name": "quantize", "scheme": "dynamic_int8", "backend": "torchao"})
    child = compress(method, mlp.source, mlp.data, tmp_path)
    assert child.compression is not None
    state = load_file(str(child.artifact))

    def check(tensors: dict[str, torch.Tensor], compression: object) -> None:
        path = tmp_path / "tampered.safetensors"
        save_file(tensors, str(path))
        check_compressed_weights(MLP, path, compression)

    as_float = {**state, "head.weight": state["head.weight"].float()}
    with pytest.raises(InvalidInput, match=r"head.weight: float32\[10, 128\].*int8\[10, 128\]"):
        check(as_float, child.compression)
    missing = {k: v for k, v in state.items() if k != "head.weight_scale"}
    with pytest.raises(InvalidInput, match=r"missing tensors \['head\.weight_scale'\]"):
        check(missing, child.compression)
    with pytest.raises(InvalidInput, match=r"params\.compression\.method"):
        check(state, {"method": "sparsify"})
    with pytest.raises(InvalidInput, match=r"params.compression.modules\[0\]"):
        check(state, {**child.compression, "modules": ["layers.9.linear"]})


def test_unknown_layers_are_named_in_the_error() -> None:
    model = build_model(MLP)
    with pytest.raises(InvalidInput, match=r"method.modules\[1\]: 'layers.3.linear'.*head"):
        choose_modules(model, "dynamic_int8", ["head", "layers.3.linear"])
