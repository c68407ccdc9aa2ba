"""Loss and metrics accumulated over batches, and :func:`evaluate`.

The running sums are plain floats so that a checkpoint taken mid-epoch can carry them,
and a resumed epoch reports exactly what an uninterrupted one would have. A batch's
statistics stay tensors on the model's device until they are read (:meth:`compute`,
:meth:`state_dict`) or a few hundred are waiting: adding a batch never waits for the
device, and the floats are added up in batch order, so the sums are the same to the bit.
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

# Batches whose statistics may wait as tensors before they are added to the floats.
PENDING_BATCHES = 256


def _add(total: list[float], values: list[float]) -> list[float]:
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
        # Per batch, not yet added: its row count, mean loss, predictions and labels (for
        # accuracy, judged all at once), and regression sums.
        self._rows: list[int] = []
        self._losses: list[torch.Tensor] = []
        self._predicted: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._sums: list[torch.Tensor] = []

    def update(
        self, outputs: torch.Tensor, y: torch.Tensor, loss: torch.Tensor | None = None
    ) -> None:
        """Add one batch; ``loss``, when given, is its mean loss in the same units, already
        computed (a training step's), so that it is not computed a second time."""
        outputs = outputs.detach()
        batch = outputs.shape[0]
        self.count += batch
        self._rows.append(batch)
        if loss is None:
            with torch.no_grad():
                loss = self.objective(outputs, y)
        self._losses.append(loss.detach())
        if "accuracy" in self.objective.metrics:
            outputs = self.objective.logits(outputs)
            if y.is_floating_point():
                # Multi-label: every (row, label) pair is judged on its own.
                predicted = outputs > 0
            else:
                predicted = outputs.argmax(1) if outputs.shape[1] > 1 else (outputs[:, 0] > 0)
            self._predicted.append(predicted)
            self._labels.append(y)
            self.judged += predicted.numel()
        if self.objective.task == "regression":
            target = y.reshape(outputs.shape).double()
            error = outputs.double() - target
            # One [4, outputs] tensor per batch: sse, sae, sum of y, sum of y².
            sums = (error.square(), error.abs(), target, target.square())
            self._sums.append(torch.stack([part.sum(0) for part in sums]))
        if len(self._rows) >= PENDING_BATCHES:
            self._flush()

    def _flush(self) -> None:
        """Add the waiting batches to the running floats, in batch order."""
        if not self._rows:
            return
        losses = torch.stack(self._losses).tolist()
        for rows, value in zip(self._rows, losses, strict=True):
            self.loss += value * rows
        if self._predicted:
            predicted, labels = torch.cat(self._predicted), torch.cat(self._labels)
            if labels.is_floating_point():
                hits = predicted == (labels.reshape(predicted.shape) > 0.5)
            else:
                hits = predicted == labels
            self.correct += float(hits.sum())  # a count: exact, however the batches group
        for sse, sae, sum_y, sum_y2 in torch.stack(self._sums).tolist() if self._sums else []:
            self.sse = _add(self.sse, sse)
            self.sae = _add(self.sae, sae)
            self.sum_y = _add(self.sum_y, sum_y)
            self.sum_y2 = _add(self.sum_y2, sum_y2)
        self._rows, self._losses, self._sums = [], [], []
        self._predicted, self._labels = [], []

    def compute(self) -> dict[str, float]:
        """``loss`` and each metric over what was added since :meth:`reset`."""
        self._flush()
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
        self._flush()
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
        self.reset()
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
