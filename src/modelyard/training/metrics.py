"""Loss and metrics accumulated over batches, and :func:`evaluate`.

The running sums are plain floats so that a checkpoint taken mid-epoch can carry them,
and a resumed epoch reports exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from modelyard.training.config import LossConfig
from modelyard.training.objective import Objective


def _add(total: list[float], part: torch.Tensor) -> list[float]:
    values: list[float] = part.tolist()
    return values if not total else [a + b for a, b in zip(total, values, strict=True)]


class MetricTracker:
    """Streaming loss and metrics for one pass over the data.

    ``update`` takes outputs and labels in the data's own units.
    """

    def __init__(self, objective: Objective):
        self.objective = objective
        self.reset()

    def reset(self) -> None:
        """Start a new pass."""
        self.count = 0
        self.loss = 0.0
        self.correct = 0.0
        self.judged = 0.0
        self.sse: list[float] = []
        self.sae: list[float] = []
        self.sum_y: list[float] = []
        self.sum_y2: list[float] = []

    @torch.no_grad()
    def update(self, outputs: torch.Tensor, y: torch.Tensor) -> None:
        """Add one batch."""
        batch = outputs.shape[0]
        self.count += batch
        self.loss += float(self.objective(outputs, y)) * batch
        if "accuracy" in self.objective.metrics:
            outputs = self.objective.logits(outputs)
            if y.is_floating_point():
                # Multi-label: every (row, label) pair is judged on its own.
                hits = (outputs > 0) == (y.reshape(outputs.shape) > 0.5)
            else:
                predicted = outputs.argmax(1) if outputs.shape[1] > 1 else (outputs[:, 0] > 0)
                hits = predicted.long() == y.long()
            self.correct += float(hits.sum())
            self.judged += hits.numel()
        if self.objective.task == "regression":
            target = y.reshape(outputs.shape).double()
            error = outputs.double() - target
            self.sse = _add(self.sse, error.pow(2).sum(0))
            self.sae = _add(self.sae, error.abs().sum(0))
            self.sum_y = _add(self.sum_y, target.sum(0))
            self.sum_y2 = _add(self.sum_y2, target.pow(2).sum(0))

    def compute(self) -> dict[str, float]:
        """``loss`` and each metric over what was added since :meth:`reset`."""
        if not self.count:
            return {}
        result = {"loss": self.loss / self.count}
        n = self.count
        for name in self.objective.metrics:
            if name == "accuracy":
                result[name] = self.correct / max(self.judged, 1.0)
            elif name == "mse":
                result[name] = sum(self.sse) / (n * len(self.sse))
            elif name == "rmse":
                result[name] = math.sqrt(sum(self.sse) / (n * len(self.sse)))
            elif name == "mae":
                result[name] = sum(self.sae) / (n * len(self.sae))
            elif name == "r2":
                result[name] = self._r2()
        return result

    def _r2(self) -> float:
        scores = []
        for sse, sy, sy2 in zip(self.sse, self.sum_y, self.sum_y2, strict=True):
            total = sy2 - sy * sy / self.count
            # A constant target has no variance to explain: perfect or nothing, as in sklearn.
            scores.append(1.0 - sse / total if total > 1e-12 else float(sse <= 1e-12))
        return sum(scores) / len(scores)

    def state_dict(self) -> dict[str, Any]:
        """The running sums, JSON-able."""
        return {
            "count": self.count,
            "loss": self.loss,
            "correct": self.correct,
            "judged": self.judged,
            "sse": self.sse,
            "sae": self.sae,
            "sum_y": self.sum_y,
            "sum_y2": self.sum_y2,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s sums."""
        self.count = int(state["count"])
        self.loss = float(state["loss"])
        self.correct = float(state["correct"])
        self.judged = float(state["judged"])
        self.sse = [float(v) for v in state["sse"]]
        self.sae = [float(v) for v in state["sae"]]
        self.sum_y = [float(v) for v in state["sum_y"]]
        self.sum_y2 = [float(v) for v in state["sum_y2"]]


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def run_eval(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    objective: Objective,
    *,
    batch_size: int = 1024,
    output_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Loss and metrics of ``model`` on prepared tensors, in eval mode and without gradients.

    ``output_transform`` maps outputs to the labels' units (undoing target scaling).
    """
    tracker = MetricTracker(objective)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                outputs = model(x[start : start + batch_size].to(device))
                if output_transform is not None:
                    outputs = output_transform(outputs)
                tracker.update(outputs, y[start : start + batch_size].to(device))
    finally:
        model.train(was_training)
    return tracker.compute()


def evaluate(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    metrics: Sequence[str] = (),
    loss: str | LossConfig = "cross_entropy",
    *,
    batch_size: int = 1024,
) -> dict[str, float]:
    """``loss`` and ``metrics`` of ``model`` on preprocessed inputs ``x`` and labels ``y``.

    Integer labels are class ids; float labels are regression targets (or multi-label
    targets for ``bce``).

    >>> evaluate(model, x_test, y_test, ["accuracy"], "cross_entropy")  # doctest: +SKIP
    {'loss': 0.08, 'accuracy': 0.97}
    """
    x_tensor = torch.as_tensor(x)
    y_tensor = torch.as_tensor(y)
    objective = Objective.for_labels(y_tensor, loss, tuple(metrics))
    return run_eval(model, x_tensor, y_tensor, objective, batch_size=batch_size)
