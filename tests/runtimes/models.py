"""Tiny real models on digits, saved in every servable format the way the registry takes them.

A version is trained for a few steps in-process, its preprocessing (scale, then
standardize) fitted on the raw pixels, and written as safetensors, TorchScript, a
``torch.export`` program and ONNX; each file is then read back through the registry's own
intake, so the signatures are the ones a stored version carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from modelyard.nn import build_model, parse_spec, save_weights, spec_signature
from modelyard.registry.artifacts import inspect_artifact
from modelyard.runtimes import VersionArtifact
from modelyard.training import Objective, Preprocessor, parse_config

MLP_SPEC: dict[str, Any] = {
    "arch": "mlp",
    "input_shape": [64],
    "hidden": [32, 16],
    "dropout": 0.2,
    "num_outputs": 10,
}
CNN_SPEC: dict[str, Any] = {
    "arch": "cnn",
    "input_shape": [1, 8, 8],
    "conv": [{"channels": 4, "batch_norm": True}, {"channels": 8}],
    "hidden": [16],
    "dropout": 0.1,
    "num_outputs": 10,
}


@dataclass
class Version:
    """A model trained in-process and its files in every format."""

    spec: dict[str, Any]
    model: nn.Module
    preprocessing: dict[str, Any]
    files: dict[str, VersionArtifact]
    x: np.ndarray
    y: np.ndarray

    def expected(self, raw: np.ndarray) -> np.ndarray:
        """What training would compute for raw rows: the model on the preprocessed input."""
        pre = Preprocessor.from_dict(self.preprocessing)
        with torch.no_grad():
            out: np.ndarray = self.model(pre.apply(raw)).numpy()
        return out

    def artifact(self, fmt: str, **changes: Any) -> VersionArtifact:
        base = self.files[fmt]
        fields = {
            "format": base.format,
            "path": base.path,
            "spec": base.spec,
            "signature": base.signature,
            "params": base.params,
        }
        return VersionArtifact(**{**fields, **changes})


def fit_preprocessing(
    spec: dict[str, Any], x: np.ndarray, y: np.ndarray, preprocessing: dict[str, Any]
) -> dict[str, Any]:
    """The transform training would record for ``preprocessing``, fitted on ``x``."""
    parsed = parse_spec(spec)
    config = parse_config({"preprocessing": preprocessing})
    pre = Preprocessor.for_training(parsed, config.preprocessing, Objective.resolve(parsed, config))
    return pre.fit(x, y).to_dict()


def train_briefly(spec: dict[str, Any], x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """A few optimiser steps, so weights and batch-norm statistics are not the initial ones."""
    torch.manual_seed(0)
    model = build_model(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(20):
        rows = slice(step * 64 % len(x), step * 64 % len(x) + 64)
        loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def registry_signature(path: Path, fmt: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    """The signature the registry stores for this file."""
    info = inspect_artifact(
        path,
        declared_format=fmt,
        filename=path.name,
        spec=spec,
        work_dir=path.parent,
        spec_checker=lambda s, _p: spec_signature(s),
        max_unpacked_bytes=1 << 30,
    )
    assert info.format == fmt
    assert info.signature is not None
    return info.signature


def save_all_formats(
    model: nn.Module, spec: dict[str, Any], params: dict[str, Any], folder: Path
) -> dict[str, VersionArtifact]:
    folder.mkdir(parents=True, exist_ok=True)
    example = torch.randn(2, *spec["input_shape"])
    paths = {
        "safetensors": folder / "model.safetensors",
        "torchscript": folder / "model.pt",
        "torch_export": folder / "model.pt2",
        "onnx": folder / "model.onnx",
    }
    save_weights(model, paths["safetensors"], spec)
    torch.jit.save(torch.jit.script(model), str(paths["torchscript"]))
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(paths["torch_export"]))
    torch.onnx.export(
        model,
        (example,),
        str(paths["onnx"]),
        input_names=["pixels"],
        output_names=["logits"],
        dynamic_axes={"pixels": {0: "n"}, "logits": {0: "n"}},
        dynamo=False,
    )
    artifacts = {}
    for fmt, path in paths.items():
        spec_of = spec if fmt == "safetensors" else None
        signature = registry_signature(path, fmt, spec_of)
        artifacts[fmt] = VersionArtifact(fmt, path, spec_of, signature, params)
    return artifacts


def make_version(spec: dict[str, Any], folder: Path) -> Version:
    x, y = load_digits(return_X_y=True)
    preprocessing = fit_preprocessing(spec, x, y, {"scale": 0.0625, "standardize": True})
    pre = Preprocessor.from_dict(preprocessing)
    model = train_briefly(spec, pre.apply(x), torch.from_numpy(y))
    params = {"preprocessing": preprocessing}
    files = save_all_formats(model, spec, params, folder)
    return Version(spec, model, preprocessing, files, x, y)
