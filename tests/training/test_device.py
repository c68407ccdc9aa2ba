"""Device choice; the CUDA checks run where a GPU is present."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from modelyard.errors import InvalidInput
from modelyard.training import BaseCallbacks, resolve_device, train

from .conftest import Split

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_auto_picks_cuda_when_available() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_a_gpu_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"config.device: CUDA is not available"):
        resolve_device("cuda")


@cuda
def test_training_on_cuda(iris: Split) -> None:
    spec = {"arch": "mlp", "input_shape": [4], "hidden": [16], "dropout": 0.1, "num_outputs": 3}
    config = {
        "epochs": 40,
        "device": "cuda",
        "optimizer": {"name": "adam", "lr": 0.01},
        "preprocessing": {"standardize": True},
    }
    result = train(spec, config, iris.x_train, iris.y_train)
    assert result.device.startswith("cuda")
    assert next(result.model.parameters()).is_cuda
    assert result.metrics["train"]["accuracy"] >= 0.9


@cuda
def test_resume_on_cuda_continues_the_run(iris: Split) -> None:
    class StopAtFirstCheckpoint(BaseCallbacks):
        def __init__(self) -> None:
            self.saved: list[dict[str, Any]] = []

        def save_checkpoint(self, state: dict[str, Any]) -> None:
            self.saved.append(state)

        def should_stop(self) -> bool:
            return bool(self.saved)

    spec = {"arch": "mlp", "input_shape": [4], "hidden": [16], "num_outputs": 3}
    config = {"epochs": 4, "device": "cuda", "checkpoint_every_steps": 5}
    callbacks = StopAtFirstCheckpoint()
    stopped = train(spec, config, iris.x_train, iris.y_train, callbacks=callbacks)
    assert stopped.cancelled
    assert stopped.steps == 5
    resumed = train(spec, config, iris.x_train, iris.y_train, resume=callbacks.saved[-1])
    assert resumed.steps == 4 * 4  # 120 rows in batches of 32
    assert not resumed.cancelled
