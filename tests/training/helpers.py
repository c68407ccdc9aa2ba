"""Shared helpers for the training tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from modelyard.training import BaseCallbacks, Preprocessor, TrainResult, evaluate


def held_out_metrics(
    result: TrainResult, x: np.ndarray, y: np.ndarray, metrics: list[str], loss: str
) -> dict[str, float]:
    """Metrics of a trained model on held-out raw data, through its recorded preprocessing."""
    pre = Preprocessor.from_dict(result.preprocessing)
    return evaluate(result.model, pre.apply(x), pre.encode_labels(y), metrics, loss)


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Recorder(BaseCallbacks):
    """Keeps every event and checkpoint."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.checkpoints: list[dict[str, Any]] = []

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self.checkpoints.append(state)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]
