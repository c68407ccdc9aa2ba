"""The default quantization: ONNX Runtime int8 kernels, a smaller child, loaded without pickle."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modelyard.compression import compress, measure, parse_method
from modelyard.runtimes import VersionArtifact, load_runtime
from tests.compression.conftest import Trained

# Weight bytes, parent / child: every MLP weight is int8; the CNN's convolutions stay float.
SMALLER = {"mlp": 3.5, "cnn": 1.5}


def _refuse(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("the quantized version was unpickled")


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_default_quantize_is_smaller_as_accurate_and_loads_without_pickle(
    name: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained: Trained = request.getfixturevalue(name)
    data = trained.data
    child = compress(parse_method({"name": "quantize"}), trained.source, data, tmp_path)
    assert child.format == "onnx" and child.facts["backend"] == "onnxruntime"
    assert "MatMulInteger" in child.facts["int8_ops"]
    parent = measure(trained.fresh(), trained.source.path, data.x_eval, data.y_eval, data.objective)
    row = measure(child.module, child.artifact, data.x_eval, data.y_eval, data.objective)
    assert parent["weight_bytes"] / row["weight_bytes"] >= SMALLER[name]
    assert parent["metrics"]["accuracy"] - row["metrics"]["accuracy"] <= 0.01

    monkeypatch.setattr(pickle, "load", _refuse)
    monkeypatch.setattr(pickle, "loads", _refuse)
    monkeypatch.setattr(torch, "load", _refuse)
    params = {"preprocessing": trained.preprocessing}
    artifact = VersionArtifact(child.format, child.artifact, None, None, params)
    runtime = load_runtime(artifact, runtime="auto", work_dir=tmp_path / "runtime")
    assert runtime.name == "onnxruntime"
    (input_name,) = [spec.name for spec in runtime.inputs]
    (got,) = runtime.forward({input_name: data.x_eval[:32].numpy()}).values()
    with torch.no_grad():
        want = child.module(data.x_eval[:32]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_the_parent_is_also_timed_on_onnx_runtime(mlp: Trained, tmp_path: Path) -> None:
    from modelyard.compression.report import onnxruntime_latency

    timed = onnxruntime_latency(mlp.fresh(), mlp.data.x_eval, tmp_path)
    assert timed is not None and set(timed) == {"batch_1", "batch_32"}
    assert all(value > 0 for value in timed.values())
