"""Compressed and exported versions load in the serving runtime layer and predict alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modelyard.compression import compress, parse_method
from modelyard.runtimes import VersionArtifact, load_runtime
from tests.compression.conftest import Trained, digits_split

METHODS: list[dict[str, Any]] = [
    {"name": "quantize", "scheme": "dynamic_int8"},
    {"name": "quantize", "scheme": "weight_int4"},
    {"name": "prune", "kind": "unstructured", "sparsity": 0.5},
    {"name": "cast", "dtype": "float16"},
    {"name": "export", "format": "onnx"},
    {"name": "quantize", "scheme": "static_int8", "calibration_dataset": "digits"},
]


@pytest.mark.parametrize("raw", METHODS, ids=lambda m: json.dumps(m, sort_keys=True))
def test_the_runtime_serves_what_the_job_measured(
    mlp: Trained, tmp_path: Path, raw: dict[str, Any]
) -> None:
    child = compress(parse_method(raw), mlp.source, mlp.data, tmp_path)
    params: dict[str, Any] = {"preprocessing": mlp.preprocessing}
    if child.compression is not None:
        params["compression"] = child.compression
    artifact = VersionArtifact(child.format, child.artifact, child.spec, None, params)
    runtime = load_runtime(artifact, runtime="auto", work_dir=tmp_path / "runtime")
    _x_train, x_test, _y_train, _y_test = digits_split()
    (name,) = [spec.name for spec in runtime.inputs]
    out = runtime.infer({name: x_test[:32]})
    (got,) = out.values()
    with torch.no_grad():
        want = child.module(mlp.data.x_eval[:32]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-3)
