"""Layers the architectures share: activations and the dense block."""

from __future__ import annotations

import torch
from torch import nn

from modelyard.nn.spec_base import Activation


def make_activation(name: Activation) -> nn.Module:
    """The activation module called ``name``."""
    modules: dict[str, type[nn.Module]] = {
        "relu": nn.ReLU,
        "gelu": nn.GELU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "silu": nn.SiLU,
        "elu": nn.ELU,
        "leaky_relu": nn.LeakyReLU,
    }
    return modules[name]()


class DenseBlock(nn.Module):
    """Linear, activation, dropout.

    Dropout is always present (``p=0`` is the identity) so that parameter names do not
    depend on the dropout rate, and weights move between specs that differ only in it.
    """

    def __init__(self, in_features: int, out_features: int, activation: Activation, dropout: float):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.act = make_activation(activation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.drop(self.act(self.linear(x)))
        return out


def dense_stack(
    in_features: int, hidden: list[int], activation: Activation, dropout: float
) -> tuple[nn.ModuleList, int]:
    """Dense blocks of the given widths, and the width that comes out of them."""
    blocks = nn.ModuleList()
    width = in_features
    for size in hidden:
        blocks.append(DenseBlock(width, size, activation, dropout))
        width = size
    return blocks, width
