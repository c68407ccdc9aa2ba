"""Every servable format loads and answers exactly what the model computes in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modelyard.nn import build_model, save_weights, spec_signature
from modelyard.runtimes import TensorSpec, VersionArtifact, load_runtime
from tests.runtimes.models import MLP_SPEC, Version, registry_signature

# (format, runtime asked for, engine expected to answer)
ENGINES = [
    ("safetensors", "torch", "torch"),
    ("safetensors", "onnxruntime", "onnxruntime"),
    ("torchscript", "auto", "torchscript"),
    ("torch_export", "auto", "torch_export"),
    ("onnx", "auto", "onnxruntime"),
]
ARCHS = ["mlp", "cnn"]


def _output(outputs: dict[str, np.ndarray]) -> np.ndarray:
    assert len(outputs) == 1
    return next(iter(outputs.values()))


@pytest.mark.parametrize("version", ARCHS, indirect=True)
@pytest.mark.parametrize(("fmt", "runtime", "engine"), ENGINES)
@pytest.mark.parametrize("rows", [1, 17])
def test_raw_rows_give_the_in_process_forward_of_the_preprocessed_input(
    version: Version, fmt: str, runtime: str, engine: str, rows: int, tmp_path: Path
) -> None:
    rt = load_runtime(version.artifact(fmt), runtime=runtime, device="cpu", work_dir=tmp_path)
    assert (rt.name, rt.device) == (engine, "cpu")
    raw = version.x[100 : 100 + rows]  # float64 pixels 0..16, as a user's file holds them
    [spec] = rt.inputs
    got = _output(rt.infer({spec.name: raw}))
    assert got.shape == (rows, 10)
    np.testing.assert_allclose(got, version.expected(raw), atol=1e-5, rtol=0)
    rt.close()


@pytest.mark.parametrize(("fmt", "inputs", "outputs"), [
    ("safetensors", [TensorSpec("input", "FP32", [-1, 1, 8, 8])],
     [TensorSpec("output", "FP32", [-1, 10])]),
    ("onnx", [TensorSpec("pixels", "FP32", [-1, 1, 8, 8])],
     [TensorSpec("logits", "FP32", [-1, 10])]),
    ("torch_export", [TensorSpec("x", "FP32", [-1, 1, 8, 8])],
     [TensorSpec("linear_1", "FP32", [-1, 10])]),
    # TorchScript records no types; the recorded preprocessing says what the input is, and
    # the outputs are measured by running the model on it.
    ("torchscript", [TensorSpec("x", "FP32", [-1, 1, 8, 8])],
     [TensorSpec("output0", "FP32", [-1, 10])]),
])  # fmt: skip
def test_tensor_names_follow_the_format(
    cnn: Version, fmt: str, inputs: list[TensorSpec], outputs: list[TensorSpec], tmp_path: Path
) -> None:
    rt = load_runtime(cnn.artifact(fmt), runtime="auto", device="cpu", work_dir=tmp_path)
    assert rt.inputs == inputs
    assert [o.name for o in rt.outputs] == [o.name for o in outputs]
    if fmt != "torch_export":  # its output is named after the graph node, whatever it is
        assert rt.outputs == outputs
    out = rt.infer({inputs[0].name: cnn.x[:3]})
    assert list(out) == [o.name for o in rt.outputs]


def test_images_with_or_without_the_channel_fit_a_cnn(cnn: Version, tmp_path: Path) -> None:
    rt = load_runtime(cnn.artifact("safetensors"), runtime="torch", work_dir=tmp_path)
    raw = cnn.x[:5]
    want = cnn.expected(raw)
    for shaped in (raw, raw.reshape(5, 8, 8), raw.reshape(5, 1, 8, 8)):
        np.testing.assert_allclose(rt.infer({"input": shaped})["output"], want, atol=1e-5)


def test_a_version_without_preprocessing_takes_model_ready_tensors(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_model(MLP_SPEC).eval()
    path = tmp_path / "plain.safetensors"
    save_weights(model, path, MLP_SPEC)
    rt = load_runtime(
        VersionArtifact("safetensors", path, MLP_SPEC, spec_signature(MLP_SPEC), {}),
        runtime="torch",
        work_dir=tmp_path,
    )
    x = np.random.default_rng(0).normal(size=(4, 64))
    with torch.no_grad():
        want = model(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(rt.infer({"input": x})["output"], want, atol=1e-6)


def test_the_spec_in_the_weights_metadata_is_used_when_the_version_has_none(
    mlp: Version, tmp_path: Path
) -> None:
    rt = load_runtime(mlp.artifact("safetensors", spec=None), runtime="torch", work_dir=tmp_path)
    raw = mlp.x[:3]
    np.testing.assert_allclose(rt.infer({"input": raw})["output"], mlp.expected(raw), atol=1e-5)


def test_torchscript_without_any_recorded_types_still_serves(mlp: Version, tmp_path: Path) -> None:
    # No preprocessing and the registry's type-less signature: floats of any width are cast
    # to the module's float32 and the module checks the shape itself.
    artifact = mlp.artifact("torchscript", params={})
    rt = load_runtime(artifact, work_dir=tmp_path)
    assert rt.inputs == [TensorSpec("x", None, None)]
    ready = np.random.default_rng(0).normal(size=(3, 64))
    with torch.no_grad():
        want = mlp.model(torch.from_numpy(ready).float()).numpy()
    np.testing.assert_allclose(rt.infer({"x": ready})["output0"], want, atol=1e-5)


class _TwoHeads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.body(x)
        return y, y.sum(dim=1)


def test_torchscript_tuple_outputs_are_numbered(tmp_path: Path) -> None:
    module = torch.jit.script(_TwoHeads().eval())
    path = tmp_path / "two.pt"
    torch.jit.save(module, str(path))
    artifact = VersionArtifact(
        "torchscript", path, None, registry_signature(path, "torchscript", None)
    )
    rt = load_runtime(artifact, work_dir=tmp_path)
    x = np.ones((2, 4), dtype=np.float32)
    out = rt.infer({"x": x})
    assert sorted(out) == ["output0", "output1"]
    np.testing.assert_allclose(out["output1"], out["output0"].sum(axis=1), atol=1e-6)


@pytest.mark.parametrize("fixed", [1, 4])
def test_a_program_exported_for_one_batch_size_serves_any_batch(
    mlp: Version, fixed: int, tmp_path: Path
) -> None:
    program = torch.export.export(mlp.model, (torch.randn(fixed, 64),))
    path = tmp_path / "static.pt2"
    torch.export.save(program, str(path))
    artifact = VersionArtifact(
        "torch_export", path, None, registry_signature(path, "torch_export", None),
        {"preprocessing": mlp.preprocessing},
    )  # fmt: skip
    rt = load_runtime(artifact, work_dir=tmp_path)
    assert rt.inputs[0].shape == [-1, 64]
    assert rt.max_batch_size is None
    raw = mlp.x[:7]
    got = rt.infer({"x": raw})[rt.outputs[0].name]
    np.testing.assert_allclose(got, mlp.expected(raw), atol=1e-5)


def test_an_onnx_file_with_a_fixed_batch_of_one_serves_any_batch(
    mlp: Version, tmp_path: Path
) -> None:
    path = tmp_path / "one.onnx"
    torch.onnx.export(mlp.model, (torch.randn(1, 64),), str(path), input_names=["x"], dynamo=False)
    artifact = VersionArtifact(
        "onnx", path, None, registry_signature(path, "onnx", None),
        {"preprocessing": mlp.preprocessing},
    )  # fmt: skip
    rt = load_runtime(artifact, work_dir=tmp_path)
    raw = mlp.x[:5]
    got = _output(rt.infer({"x": raw}))
    np.testing.assert_allclose(got, mlp.expected(raw), atol=1e-5)


class _ScaleWithOption(torch.nn.Module):
    def forward(self, x: torch.Tensor, double: bool = False) -> torch.Tensor:
        return x * 2 if double else x + 1


def test_torchscript_arguments_with_defaults_keep_them(tmp_path: Path) -> None:
    path = tmp_path / "option.pt"
    torch.jit.save(torch.jit.script(_ScaleWithOption()), str(path))
    signature = registry_signature(path, "torchscript", None)
    rt = load_runtime(VersionArtifact("torchscript", path, None, signature), work_dir=tmp_path)
    assert [spec.name for spec in rt.inputs] == ["x"]
    np.testing.assert_array_equal(rt.infer({"x": np.zeros((2, 3))})["output0"], np.ones((2, 3)))
