"""Digits split in two, and the catalog MLP and CNN trained on it once per session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modelyard.compression import Data, Source, load_module, objective_for
from modelyard.training import Preprocessor

MLP = {"arch": "mlp", "input_shape": [64], "hidden": [128, 128], "num_outputs": 10}
CNN = {
    "arch": "cnn",
    "input_shape": [1, 8, 8],
    "conv": [{"channels": 16}, {"channels": 32}],
    "hidden": [64],
    "num_outputs": 10,
}


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class Trained:
    """A trained catalog model on disk, as a compression source, with its data."""

    source: Source
    data: Data
    preprocessing: dict[str, Any]

    def fresh(self) -> torch.nn.Module:
        return self.source.load()


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    parts: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = tuple(  # type: ignore[assignment]
        train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    )
    return parts


def _train(spec: dict[str, Any], folder: Path) -> Trained:
    from modelyard.nn import save_weights
    from modelyard.training import train

    x_train, x_test, y_train, y_test = digits_split()
    config = {
        "epochs": 15,
        "batch_size": 64,
        "optimizer": {"name": "adam", "lr": 0.003},
        "preprocessing": {"scale": 0.0625},
    }
    result = train(spec, config, x_train, y_train)
    path = folder / f"{spec['arch']}.safetensors"
    save_weights(result.model, path, spec=spec)
    pre = Preprocessor.from_dict(result.preprocessing)
    y_eval = pre.encode_labels(y_test)
    data = Data(
        pre.apply(x_test),
        y_eval,
        objective_for(y_eval, 10),
        pre.apply(x_train),
        pre.encode_labels(y_train),
    )
    params = {"preprocessing": result.preprocessing}
    source = Source(
        "safetensors",
        path,
        spec,
        params,
        None,
        load=lambda: load_module("safetensors", path, spec, params),
    )
    return Trained(source, data, result.preprocessing)


@pytest.fixture(scope="session")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    torch.set_num_threads(1)
    return _train(MLP, tmp_path_factory.mktemp("mlp"))


@pytest.fixture(scope="session")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    torch.set_num_threads(1)
    return _train(CNN, tmp_path_factory.mktemp("cnn"))


def accuracy(model: torch.nn.Module, data: Data) -> float:
    with torch.no_grad():
        predicted = model(data.x_eval).argmax(1)
    return float((predicted == data.y_eval).float().mean())
