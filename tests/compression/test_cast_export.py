"""Half-precision casts, and exports checked against their source and the registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modelyard.compression import compress, parse_method, restore_model, weight_stats
from modelyard.compression.export import check_close
from modelyard.errors import InvalidInput
from modelyard.registry.artifacts import inspect_artifact
from tests.compression.conftest import CNN, MLP, Trained, accuracy


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cast_halves_the_weights_behind_a_float32_interface(
    mlp: Trained, tmp_path: Path, dtype: str
) -> None:
    child = compress(parse_method({"name": "cast", "dtype": dtype}), mlp.source, mlp.data, tmp_path)
    assert weight_stats(mlp.fresh()).weight_bytes == 2 * weight_stats(child.module).weight_bytes
    assert accuracy(mlp.fresh(), mlp.data) - accuracy(child.module, mlp.data) <= 0.01
    state = load_file(str(child.artifact))
    assert str(state["head.weight"].dtype) == f"torch.{dtype}"
    restored = restore_model(MLP, {"method": "cast", "dtype": dtype}, state)
    with torch.no_grad():
        out = restored(mlp.data.x_eval)
    assert out.dtype == torch.float32
    assert torch.equal(out, child.module(mlp.data.x_eval))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "torch_export"])
def test_exports_match_their_source_and_pass_the_registry_checks(
    cnn: Trained, tmp_path: Path, fmt: str
) -> None:
    method = parse_method({"name": "export", "format": fmt})
    child = compress(method, cnn.source, cnn.data, tmp_path)
    assert child.format == fmt
    assert child.facts["max_abs_diff"] <= 1e-4
    with torch.no_grad():
        torch.testing.assert_close(
            child.module(cnn.data.x_eval), cnn.fresh()(cnn.data.x_eval), atol=1e-4, rtol=0
        )
    info = inspect_artifact(
        child.artifact,
        declared_format=None,
        filename=child.artifact.name,
        spec=None,
        work_dir=tmp_path,
        max_unpacked_bytes=1 << 30,
    )
    assert info.format == fmt
    if fmt != "torchscript":
        assert info.signature is not None
        assert info.signature["inputs"][0]["shape"] == [-1, *CNN["input_shape"]]


def test_an_export_that_differs_is_refused(mlp: Trained) -> None:
    model = mlp.fresh()
    other = mlp.fresh()
    with torch.no_grad():
        other.head.bias.add_(1e-3)
    with pytest.raises(InvalidInput, match="differ from the source"):
        check_close(model, other, mlp.data.x_eval, atol=1e-4, rtol=0.0)


def test_onnx_runtime_quantizes_catalog_models_statically_and_dynamically(
    cnn: Trained, tmp_path: Path
) -> None:
    for index, raw in enumerate(
        [
            {"name": "quantize", "scheme": "static_int8", "calibration_dataset": "digits"},
            {"name": "quantize", "scheme": "dynamic_int8", "backend": "onnxruntime"},
        ]
    ):
        work = tmp_path / str(index)
        work.mkdir()
        child = compress(parse_method(raw), cnn.source, cnn.data, work)
        assert child.format == "onnx" and child.facts["backend"] == "onnxruntime"
        assert accuracy(cnn.fresh(), cnn.data) - accuracy(child.module, cnn.data) <= 0.02
        stats = weight_stats(child.module)
        assert weight_stats(cnn.fresh()).weight_bytes / stats.weight_bytes >= 1.9
