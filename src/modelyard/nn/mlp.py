"""``mlp``: a multi-layer perceptron over flattened inputs."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from modelyard.nn.blocks import dense_stack
from modelyard.nn.spec_base import Activation, Dim, Rate, SpecBase


class MLPSpec(SpecBase):
    """Dense layers over the flattened input.

    Example: ``{"arch": "mlp", "input_shape": [64], "hidden": [128, 64], "num_outputs": 10}``.
    With no hidden layers it is a linear (or logistic) regression.
    """

    arch: Literal["mlp"] = "mlp"
    hidden: list[Dim] = Field(default_factory=list, description="Width of each hidden layer.")
    activation: Activation = Field(default="relu", description="Activation after each layer.")
    dropout: Rate = Field(default=0.0, description="Dropout after each hidden layer.")


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
