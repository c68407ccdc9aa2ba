"""The loader table: formats, engines, devices, compressed versions and closing."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modelyard.errors import InvalidInput, Unavailable, UnsupportedFormat
from modelyard.nn import build_model
from modelyard.runtimes import (
    LOADERS,
    FormatLoader,
    InputPipeline,
    LoadOptions,
    ModelRuntime,
    TensorSpec,
    VersionArtifact,
    load_runtime,
)
from tests.runtimes.models import MLP_SPEC, Version


def test_an_unknown_format_is_unsupported(mlp: Version, tmp_path: Path) -> None:
    artifact = mlp.artifact("safetensors", format="pickle")
    with pytest.raises(UnsupportedFormat, match=r"format 'pickle' cannot be served; .*onnx"):
        load_runtime(artifact, work_dir=tmp_path)


@pytest.mark.parametrize(
    ("fmt", "runtime", "choices"),
    [
        ("safetensors", "torchscript", "auto, torch, onnxruntime"),
        ("onnx", "torch", "auto, onnxruntime"),
        ("torchscript", "onnxruntime", "auto, torchscript"),
    ],
)
def test_an_engine_the_format_cannot_use_is_refused_with_the_choices(
    mlp: Version, fmt: str, runtime: str, choices: str, tmp_path: Path
) -> None:
    message = f"runtime: '{runtime}' cannot run {fmt} versions; choose {choices}"
    with pytest.raises(InvalidInput, match=message):
        load_runtime(mlp.artifact(fmt), runtime=runtime, work_dir=tmp_path)


@pytest.mark.parametrize("fmt", ["safetensors", "torchscript", "torch_export", "onnx"])
def test_unknown_devices_are_refused(mlp: Version, fmt: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"device: 'tpu'"):
        load_runtime(mlp.artifact(fmt), device="tpu", work_dir=tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("fmt", ["safetensors", "torchscript", "torch_export"])
def test_cuda_without_a_gpu_is_refused(mlp: Version, fmt: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"device: CUDA is not available"):
        load_runtime(mlp.artifact(fmt), device="cuda", work_dir=tmp_path)


@pytest.mark.parametrize("fmt", ["safetensors", "onnx"])
def test_auto_device_is_the_gpu_when_there_is_one(mlp: Version, fmt: str, tmp_path: Path) -> None:
    import onnxruntime

    rt = load_runtime(mlp.artifact(fmt), device="auto", work_dir=tmp_path)
    if rt.name == "onnxruntime":
        on_gpu = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    else:
        on_gpu = torch.cuda.is_available()
    assert rt.device.startswith("cuda:") == on_gpu
    raw = mlp.x[:4]
    got = rt.infer({rt.inputs[0].name: raw})[rt.outputs[0].name]
    np.testing.assert_allclose(got, mlp.expected(raw), atol=1e-4)


@pytest.mark.parametrize("fmt", ["safetensors", "onnx"])
def test_a_closed_runtime_is_unavailable(mlp: Version, fmt: str, tmp_path: Path) -> None:
    rt = load_runtime(mlp.artifact(fmt), work_dir=tmp_path)
    name = rt.inputs[0].name
    assert rt.infer({name: mlp.x[:1]})
    rt.close()
    rt.close()
    with pytest.raises(Unavailable, match="closed"):
        rt.infer({name: mlp.x[:1]})


def test_threads_must_be_positive(mlp: Version, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"threads: must be at least 1"):
        load_runtime(mlp.artifact("onnx"), threads=0, work_dir=tmp_path)


def test_a_compressed_version_is_rebuilt_by_the_compression_package(
    mlp: Version, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, ...]] = []

    def restore_model(spec: Any, compression: Any, state: dict[str, torch.Tensor]) -> Any:
        calls.append((spec, compression, sorted(state)))
        model = build_model(spec)
        model.load_state_dict({k: v * 0.5 if k == "head.bias" else v for k, v in state.items()})
        return model

    package = types.ModuleType("modelyard.compression")
    package.restore_model = restore_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "modelyard.compression", package)
    compression = {"method": "halve_head_bias"}
    params = {**mlp.files["safetensors"].params, "compression": compression}
    rt = load_runtime(
        mlp.artifact("safetensors", params=params), runtime="torch", work_dir=tmp_path
    )
    [(spec, given, names)] = calls
    assert spec["arch"] == "mlp"
    assert spec["hidden"] == [32, 16]
    assert given == compression
    assert "head.bias" in names
    raw = mlp.x[:3]
    bias = mlp.model.head.bias.detach().numpy()
    np.testing.assert_allclose(
        rt.infer({"input": raw})["output"], mlp.expected(raw) - 0.5 * bias, atol=1e-5
    )


def test_a_compressed_version_without_the_compression_package_is_refused(
    mlp: Version, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes the import fail, as on an installation without it.
    monkeypatch.setitem(sys.modules, "modelyard.compression", None)
    params = {**mlp.files["safetensors"].params, "compression": {"method": "int8"}}
    with pytest.raises(InvalidInput, match=r"compressed; .* needs the modelyard.compression"):
        load_runtime(mlp.artifact("safetensors", params=params), work_dir=tmp_path)


def test_weights_that_do_not_fit_the_spec_are_refused(mlp: Version, tmp_path: Path) -> None:
    other = {**MLP_SPEC, "hidden": [8]}
    with pytest.raises(InvalidInput, match=r"weights do not fit the spec"):
        load_runtime(mlp.artifact("safetensors", spec=other), runtime="torch", work_dir=tmp_path)


class _Doubler(ModelRuntime):
    def forward(self, arrays: Any) -> dict[str, np.ndarray]:
        return {"y": arrays["x"] * 2}


def test_a_new_format_is_one_table_entry(
    mlp: Version, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def load(artifact: VersionArtifact, options: LoadOptions) -> ModelRuntime:
        specs = [TensorSpec("x", "FP32", [-1, 2])]
        return _Doubler(
            name="doubler",
            device="cpu",
            inputs=specs,
            outputs=[TensorSpec("y", "FP32", [-1, 2])],
            pipeline=InputPipeline(specs),
        )

    monkeypatch.setitem(LOADERS, "doubled", FormatLoader(runtimes=("doubler",), load=load))
    rt = load_runtime(mlp.artifact("onnx", format="doubled"), work_dir=tmp_path)
    assert rt.selection["reason"] == "the only runtime for doubled versions"
    np.testing.assert_array_equal(rt.infer({"x": [[1, 2]]})["y"], [[2.0, 4.0]])
    with pytest.raises(InvalidInput, match=r"input 'x': dimension 1 is 3, the model needs 2"):
        rt.infer({"x": [[1, 2, 3]]})
