"""Early stopping: watch one metric per epoch, remember the best weights."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from modelyard.training.config import EarlyStoppingConfig


class EarlyStopping:
    """Counts epochs without improvement of ``config.metric``; keeps the best weights."""

    def __init__(self, config: EarlyStoppingConfig):
        self.config = config
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by at least ``min_delta``."""
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        delta = self.config.min_delta
        return value > self.best + delta if self.config.maximize else value < self.best - delta

    def update(self, value: float, epoch: int, model: nn.Module) -> bool:
        """Record epoch ``epoch``'s value; True when the run should stop."""
        if self.improves(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            if self.config.restore_best:
                self.best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                }
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.config.patience

    def summary(self) -> dict[str, Any]:
        """``{"metric", "value", "epoch"}`` of the best epoch."""
        return {"metric": self.config.metric, "value": self.best, "epoch": self.best_epoch}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue counting after a resume."""
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = int(state["bad_epochs"])
        self.best_state = state["best_state"]
