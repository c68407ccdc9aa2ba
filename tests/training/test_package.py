"""The training package's public face, its layering, and the data-to-model path."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

import modelyard.training
from modelyard.nn import load_weights, save_weights
from modelyard.training import Preprocessor, load_xy, train

from .conftest import Split

PACKAGE = Path(modelyard.training.__file__).parent


def test_all_names_exist_and_public_callables_are_documented() -> None:
    for name in modelyard.training.__all__:
        value = getattr(modelyard.training, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), name


def test_training_imports_nothing_above_the_ml_core() -> None:
    # runtimes.outputs is a leaf of the ML core (what a model's outputs are, no torch at import)
    allowed = (
        "modelyard.errors",
        "modelyard.lazy",
        "modelyard.nn",
        "modelyard.training",
        "modelyard.runtimes.outputs",
    )
    forbidden = ("fastapi", "sqlalchemy", "starlette", "uvicorn", "httpx")
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
                if name.startswith("modelyard"):
                    assert name.startswith(allowed), f"{path.name} imports {name}"


def test_table_to_trained_weights_to_served_prediction(tmp_path: Path, iris: Split) -> None:
    names = np.array(["setosa", "versicolor", "virginica"])
    columns = {f"f{i}": iris.x_train[:, i] for i in range(4)}
    columns["species"] = names[iris.y_train]
    pq.write_table(pa.table(columns), tmp_path / "data.parquet")

    x, y = load_xy({"data.parquet": tmp_path / "data.parquet"}, "table", "species")
    spec = {"arch": "mlp", "input_shape": [4], "hidden": [16], "num_outputs": 3}
    config = {
        "epochs": 40,
        "optimizer": {"name": "adam", "lr": 0.01},
        "preprocessing": {"standardize": True},
    }
    result = train(spec, config, x, y)
    save_weights(result.model, tmp_path / "model.safetensors", result.spec)

    # What serving does: the spec from the file, the recorded transform, class names back.
    served = load_weights(None, tmp_path / "model.safetensors").eval()
    pre = Preprocessor.from_dict(result.preprocessing)
    with torch.no_grad():
        predicted = pre.decode_labels(served(pre.apply(iris.x_test)).argmax(1))
    accuracy = np.mean(np.array(predicted) == names[iris.y_test])
    assert accuracy >= 0.85


def test_memory_mapped_arrays_and_tensors_train_alike(tmp_path: Path, iris: Split) -> None:
    np.save(tmp_path / "x.npy", iris.x_train)
    np.save(tmp_path / "y.npy", iris.y_train)
    x, y = load_xy({"x": tmp_path / "x.npy", "y": tmp_path / "y.npy"}, "arrays", "y")
    assert isinstance(x, np.memmap)
    spec = {"arch": "mlp", "input_shape": [4], "hidden": [8], "num_outputs": 3}
    config = {"epochs": 3, "device": "cpu", "validation": {"fraction": 0.2}}
    from_disk = train(spec, config, x, y)
    from_tensors = train(
        spec, config, torch.from_numpy(iris.x_train), torch.from_numpy(iris.y_train)
    )
    assert torch.equal(from_disk.model.head.weight, from_tensors.model.head.weight)
    assert from_disk.history == from_tensors.history
