"""Keras ``.keras`` files: vetted before Keras reads them, then run as torch modules."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from modelyard.errors import UnsafeArtifact
from modelyard.registry.keras import (
    keras_module,
    keras_signature,
    load_keras_model,
    save_keras_model,
    vet_keras_archive,
)


def _save(path: Path, *extra: Any) -> Path:
    keras = keras_module()
    keras.utils.set_random_seed(0)
    layers = [keras.Input((784,)), *extra, keras.layers.Dense(16, activation="relu")]
    keras.Sequential([*layers, keras.layers.Dense(10)]).save(str(path))
    return path


def _rewrite(source: Path, target: Path, change: Any) -> Path:
    with zipfile.ZipFile(source) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    change(members)
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return target


def test_a_keras_model_loads_as_a_torch_module_and_saves_back(tmp_path: Path) -> None:
    path = _save(tmp_path / "m.keras")
    model = load_keras_model(path, tmp_path)
    assert isinstance(model, torch.nn.Module)
    signature = keras_signature(model)
    assert signature["inputs"][0]["datatype"] == "FP32"
    assert signature["inputs"][0]["shape"] == [-1, 784]
    assert signature["outputs"][0]["shape"] == [-1, 10]
    x = torch.rand(3, 784)
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 10)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    save_keras_model(model, tmp_path / "again.keras")
    again = load_keras_model(tmp_path / "again.keras", tmp_path)
    torch.testing.assert_close(again(x), model(x))


def test_layers_that_run_code_are_refused(tmp_path: Path) -> None:
    keras = keras_module()
    path = _save(tmp_path / "lambda.keras", keras.layers.Lambda(lambda x: x * 2))
    with pytest.raises(UnsafeArtifact, match="Lambda runs arbitrary code"):
        vet_keras_archive(path, 1 << 30)


def test_objects_from_outside_keras_are_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "m.keras")

    def custom(members: dict[str, bytes]) -> None:
        config = json.loads(members["config.json"])
        config["config"]["layers"][1]["module"] = "my_package.layers"
        members["config.json"] = json.dumps(config).encode()

    forged = _rewrite(path, tmp_path / "custom.keras", custom)
    with pytest.raises(UnsafeArtifact, match=r"comes from 'my_package\.layers'"):
        vet_keras_archive(forged, 1 << 30)


def test_unexpected_members_and_size_bombs_are_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "m.keras")
    extra = _rewrite(
        path, tmp_path / "extra.keras", lambda m: m.update({"../evil.py": b"print(1)"})
    )
    with pytest.raises(UnsafeArtifact, match="holds exactly"):
        vet_keras_archive(extra, 1 << 30)
    with pytest.raises(UnsafeArtifact, match="unpacks to"):
        vet_keras_archive(path, 1000)
