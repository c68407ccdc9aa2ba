"""The objective of a run: task, loss, label form and metrics, resolved from spec and config.

Defaults follow the task: classification trains with cross-entropy (bce for a single
output) and reports accuracy; regression trains with mse and reports mse, mae and r2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F  # noqa: N812
from pydantic import ValidationError

from modelyard.errors import InvalidInput
from modelyard.nn.catalog import ArchSpec
from modelyard.nn.field_errors import invalid_input
from modelyard.nn.spec_base import Task
from modelyard.runtimes.outputs import OutputKind, as_logits
from modelyard.training.config import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    LossConfig,
    TrainConfig,
)


@dataclass(frozen=True)
class Objective:
    """What is optimised and what is reported.

    Labels reach it as class ids (int64, ``[N]``), multi-label or soft targets (float,
    ``[N, C]``), or regression targets (float, ``[N, C]``); :meth:`targets` turns them into
    what the loss takes. ``outputs`` says what the model returns: logits (catalog models),
    or probabilities its last layer made, which the loss and metrics read as their logits
    (see :mod:`modelyard.runtimes.outputs`).
    """

    task: Task
    loss: LossConfig
    one_hot: bool
    metrics: tuple[str, ...]
    outputs: OutputKind = "logits"

    @classmethod
    def resolve(cls, spec: ArchSpec, config: TrainConfig) -> Objective:
        """Decide task, loss, label form and metrics; InvalidInput if they contradict."""
        loss = config.loss
        task: Task = spec.task or (
            "regression" if loss is not None and loss.name in ("mse", "l1") else "classification"
        )
        if loss is None:
            if task == "regression":
                loss = LossConfig(name="mse")
            else:
                loss = LossConfig(name="cross_entropy" if spec.num_outputs > 1 else "bce")
        if task == "regression" and loss.name in ("cross_entropy", "bce"):
            raise InvalidInput(
                f"config.loss: {loss.name} is a classification loss, but spec.task is regression"
            )
        if loss.name == "cross_entropy" and spec.num_outputs < 2:
            raise InvalidInput(
                "spec.num_outputs: cross_entropy needs at least 2 outputs; use bce for one"
            )
        one_hot = cls._one_hot(task, loss, spec.num_outputs, config.preprocessing.one_hot)
        metrics = cls._metrics(task, config.metrics)
        stopping = config.early_stopping
        if stopping is not None and stopping.metric_name not in ("loss", *metrics):
            raise InvalidInput(
                f"config.early_stopping.metric: {stopping.metric_name} is not among the "
                f"metrics ({', '.join(metrics)}); add it to config.metrics"
            )
        if config.preprocessing.standardize_target and task != "regression":
            raise InvalidInput("config.preprocessing.standardize_target: regression only")
        return cls(task=task, loss=loss, one_hot=one_hot, metrics=metrics)

    @staticmethod
    def _one_hot(task: Task, loss: LossConfig, outputs: int, wanted: bool | None) -> bool:
        needed = task == "classification" and loss.name != "cross_entropy" and outputs > 1
        if wanted is None:
            return needed
        if wanted and task == "regression":
            raise InvalidInput("config.preprocessing.one_hot: only class labels can be one-hot")
        if needed and not wanted:
            raise InvalidInput(
                f"config.preprocessing.one_hot: {loss.name} with {outputs} outputs "
                "needs one-hot labels"
            )
        return wanted

    @staticmethod
    def _metrics(task: Task, wanted: Sequence[str] | None) -> tuple[str, ...]:
        if wanted is None:
            return ("accuracy",) if task == "classification" else ("mse", "mae", "r2")
        allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
        for index, name in enumerate(wanted):
            if name not in allowed:
                raise InvalidInput(
                    f"config.metrics[{index}]: {name} does not apply to {task}; "
                    f"use {', '.join(sorted(allowed))}"
                )
        return tuple(dict.fromkeys(wanted))

    @classmethod
    def for_labels(
        cls,
        y: torch.Tensor,
        loss: str | LossConfig,
        metrics: tuple[str, ...] | list[str],
        outputs: OutputKind = "logits",
    ) -> Objective:
        """The objective :func:`evaluate` uses: integer labels mean classification."""
        if isinstance(loss, str):
            try:
                config = LossConfig.model_validate({"name": loss})
            except ValidationError as exc:
                raise invalid_input(exc, "loss") from None
        else:
            config = loss
        classification = not y.is_floating_point() or config.name in ("cross_entropy", "bce")
        task: Task = "classification" if classification else "regression"
        return cls(task=task, loss=config, one_hot=False, metrics=tuple(metrics), outputs=outputs)

    def with_outputs(self, outputs: OutputKind) -> Objective:
        """This objective for a model whose outputs are ``outputs``."""
        return replace(self, outputs=outputs)

    def logits(self, outputs: torch.Tensor) -> torch.Tensor:
        """The model's ``outputs`` as logits (unchanged when they are logits already, and
        for regression, whose outputs are values)."""
        if self.task != "classification":
            return outputs
        return as_logits(outputs, self.outputs)

    def targets(self, y: torch.Tensor, width: int) -> torch.Tensor:
        """``y`` in the form the loss takes for outputs ``width`` wide."""
        if y.is_floating_point():
            return y.reshape(-1, width) if y.dim() == 1 else y
        if self.loss.name == "cross_entropy" and not self.one_hot:
            return y.long()
        if width == 1:
            return y.float().unsqueeze(1)
        return F.one_hot(y.long(), width).float()

    def __call__(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean loss of the model's ``outputs`` against labels ``y``."""
        outputs = self.logits(outputs)
        target = self.targets(y, outputs.shape[1])
        name = self.loss.name
        if name == "cross_entropy":
            return F.cross_entropy(outputs, target, label_smoothing=self.loss.label_smoothing)
        if name == "bce":
            return F.binary_cross_entropy_with_logits(outputs, target)
        if name == "l1":
            return F.l1_loss(outputs, target)
        return F.mse_loss(outputs, target)
