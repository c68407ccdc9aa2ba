"""Standardized regression targets, folded into the head when training ends.

Training on ``(y - mean) / std`` keeps the loss and the gradients at a sensible scale
whatever the targets' units. The head is linear, so ``std * (W h + b) + mean`` is again a
linear layer: after training it absorbs the transform and the model predicts in the
data's units, with nothing for serving to undo.
"""

from __future__ import annotations

import torch
from torch import nn


class TargetScaler:
    """Maps targets to the model's scale (``to_model``) and outputs back (``to_raw``)."""

    def __init__(self, mean: list[float], std: list[float]):
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)

    def to_model(self, y: torch.Tensor) -> torch.Tensor:
        """Targets in the units the model is trained on."""
        return (y - self.mean.to(y.device)) / self.std.to(y.device)

    def to_raw(self, outputs: torch.Tensor) -> torch.Tensor:
        """Outputs in the data's units."""
        return outputs * self.std.to(outputs.device) + self.mean.to(outputs.device)

    @torch.no_grad()
    def fold_into(self, head: nn.Linear) -> None:
        """Make ``head`` predict in the data's units."""
        std, mean = self.std.to(head.weight.device), self.mean.to(head.weight.device)
        head.weight.mul_(std.unsqueeze(1))
        head.bias.mul_(std).add_(mean)

    @torch.no_grad()
    def unfold_from(self, head: nn.Linear) -> None:
        """Undo :meth:`fold_into`, so training can continue from a folded head."""
        std, mean = self.std.to(head.weight.device), self.mean.to(head.weight.device)
        head.bias.sub_(mean).div_(std)
        head.weight.div_(std.unsqueeze(1))
