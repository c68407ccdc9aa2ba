"""``mlp``: a multi-layer perceptron over flattened inputs."""

from __future__ import annotations

import torch
from torch import nn

from modelyard.nn.blocks import dense_stack
from modelyard.nn.specs import MLPSpec


class MLP(nn.Module):
    """``layers.<i>.linear`` blocks, then ``head``."""

    def __init__(self, spec: MLPSpec):
        super().__init__()
        self.layers, width = dense_stack(
            spec.input_size, spec.hidden, spec.activation, spec.dropout
        )
        self.head = nn.Linear(width, spec.num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for block in self.layers:
            x = block(x)
        out: torch.Tensor = self.head(x)
        return out
