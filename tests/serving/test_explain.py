"""Explanations on loaded runtimes (no server): completeness of integrated gradients through
the recorded preprocessing, the same occlusion on every engine, bounds, feature names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.errors import InvalidInput
from modelyard.serving.explain import ExplainLimits, ExplainOptions, explain, feature_names

MLP = {"arch": "mlp", "input_shape": [64], "hidden": [32], "num_outputs": 10}
LIMITS = ExplainLimits()


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float32)


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory, digits: np.ndarray) -> dict[str, Any]:
    """A digits MLP's weights and a standardizing preprocessing fitted on digits."""
    import torch

    from modelyard.nn import build_model, save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("v") / "model.safetensors"
    save_weights(build_model(MLP).eval(), path, spec=MLP)
    std = digits.std(axis=0)
    preprocessing = {
        "input_shape": [64],
        "standardize": True,
        "stats_shape": [64],
        "mean": digits.mean(axis=0).tolist(),
        "std": np.where(std > 1e-6, std, 1.0).tolist(),
    }
    return {"path": path, "params": {"preprocessing": preprocessing}}


def _load(version: dict[str, Any], runtime: str, work: Path) -> Any:
    from modelyard.runtimes import VersionArtifact, load_runtime

    artifact = VersionArtifact("safetensors", version["path"], MLP, None, version["params"])
    return load_runtime(artifact, runtime=runtime, device="cpu", work_dir=work)


def test_integrated_gradients_are_complete_through_the_preprocessing(
    version: dict[str, Any], digits: np.ndarray, tmp_path: Path
) -> None:
    runtime = _load(version, "torch", tmp_path)
    x = digits[:4]
    result = explain(runtime, {"input": x}, ExplainOptions(n_steps=128), LIMITS, batch_rows=32)
    scores = runtime.infer({"input": x})["output"]
    blank = runtime.infer({"input": np.zeros_like(x)})["output"]
    rows = np.arange(len(x))
    assert result.target == scores.argmax(axis=1).tolist()
    gap = scores[rows, result.target] - blank[rows, result.target]
    delta = np.asarray(result.convergence_delta)
    assert result.attributions["input"].shape == x.shape
    assert np.all(np.abs(delta) < 0.01)
    total = result.attributions["input"].sum(axis=1)
    assert np.allclose(total - gap, delta, atol=1e-4)
    assert np.all(np.abs(total - gap) <= np.abs(delta) + 1e-4)


def test_occlusion_is_the_same_on_the_onnx_export_and_torch(
    version: dict[str, Any], digits: np.ndarray, tmp_path: Path
) -> None:
    on_torch = _load(version, "torch", tmp_path / "t")
    on_onnx = _load(version, "onnxruntime", tmp_path / "o")
    assert on_onnx.name == "onnxruntime"
    x = digits[:3]
    options = ExplainOptions(method="occlusion", window=2, target=[1, 2, 3])
    a = explain(on_torch, {"input": x}, options, LIMITS, batch_rows=32)
    b = explain(on_onnx, {"input": x}, options, LIMITS, batch_rows=7)
    assert a.attributions["input"].shape == x.shape
    assert np.allclose(a.attributions["input"], b.attributions["input"], atol=1e-4)


def test_kernel_shap_runs_on_torchscript_and_adds_up(
    version: dict[str, Any], digits: np.ndarray, tmp_path: Path
) -> None:
    import torch

    torch_rt = _load(version, "torch", tmp_path)
    traced = torch.jit.trace(torch_rt.module, torch.zeros(1, 64))
    path = tmp_path / "model.pt"
    traced.save(str(path))
    from modelyard.runtimes import VersionArtifact, load_runtime

    script = load_runtime(
        VersionArtifact("torchscript", path, None, None, version["params"]),
        runtime="torchscript",
        device="cpu",
        work_dir=tmp_path / "s",
    )
    x = {script.inputs[0].name: digits[:2]}
    options = ExplainOptions(method="kernel_shap", n_samples=300)
    result = explain(script, x, options, LIMITS, batch_rows=64)
    scores = script.infer(x)["output0"]
    blank = script.infer({k: np.zeros_like(v) for k, v in x.items()})["output0"]
    rows = np.arange(2)
    gap = scores[rows, result.target] - blank[rows, result.target]
    # Kernel SHAP's attributions add up to the gap (its efficiency constraint).
    total = next(iter(result.attributions.values())).sum(axis=1)
    assert np.allclose(total, gap, atol=1e-3)


def test_requests_over_the_bounds_name_the_field(
    version: dict[str, Any], digits: np.ndarray, tmp_path: Path
) -> None:
    runtime = _load(version, "onnxruntime", tmp_path)
    x = {"input": digits[:2]}
    cases = [
        (ExplainOptions(n_steps=10**6), "n_steps"),
        (ExplainOptions(method="kernel_shap", n_samples=10**6), "n_samples"),
        (ExplainOptions(method="occlusion", window=[2, 2]), "window"),
        (ExplainOptions(method="saliency"), "method"),  # gradients need torch
        (ExplainOptions(method="occlusion", target=10), "target"),
        (ExplainOptions(method="occlusion", baseline=[1.0, 2.0]), "baseline"),
    ]
    for options, field in cases:
        with pytest.raises(InvalidInput) as caught:
            explain(runtime, x, options, LIMITS, batch_rows=32)
        assert caught.value.extra.get("field") == field, caught.value.detail
    small = ExplainLimits(max_evaluations=100)
    with pytest.raises(InvalidInput, match="MODELYARD_EXPLAIN_MAX_EVALUATIONS") as caught:
        explain(runtime, x, ExplainOptions(method="occlusion"), small, batch_rows=32)
    assert caught.value.extra["field"] == "window"


def test_feature_names_come_from_the_table_schema() -> None:
    table = {
        "kind": "table",
        "label": "species",
        "schema": {"columns": [{"name": n} for n in ("a", "species", "b", "c")]},
    }
    assert feature_names(table, {"label": "species"}, 3) == ["a", "b", "c"]
    assert feature_names(table, {"features": ["c", "a"]}, 2) == ["c", "a"]
    assert feature_names(table, {}, 4) is None  # does not match the input
    assert feature_names({"kind": "arrays", "schema": {}}, {}, 64) is None


def test_the_app_imports_neither_torch_nor_captum() -> None:
    code = "import sys, modelyard.api.app\nprint(sorted({'torch', 'captum'} & set(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
