"""``cnn``: 2-D convolution stacks with pooling, for images."""

from __future__ import annotations

import torch
from torch import nn

from modelyard.nn.blocks import dense_stack, make_activation
from modelyard.nn.spec_base import Activation
from modelyard.nn.specs import CNNSpec, ConvSpec


class ConvBlock(nn.Module):
    """``conv``, ``norm``, activation, pooling."""

    def __init__(self, in_channels: int, spec: ConvSpec, activation: Activation):
        super().__init__()
        padding: str | int = 0 if spec.padding == "valid" else spec.padding
        self.conv = nn.Conv2d(in_channels, spec.channels, spec.kernel_size, spec.stride, padding)
        self.norm: nn.Module = nn.BatchNorm2d(spec.channels) if spec.batch_norm else nn.Identity()
        self.act = make_activation(activation)
        pools: dict[str, nn.Module] = {
            "max": nn.MaxPool2d(spec.pool_size),
            "avg": nn.AvgPool2d(spec.pool_size),
            "none": nn.Identity(),
        }
        self.pool = pools[spec.pool]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.pool(self.act(self.norm(self.conv(x))))
        return out


class CNN(nn.Module):
    """``features.<i>.conv`` blocks, ``layers.<i>.linear`` dense blocks, then ``head``."""

    def __init__(self, spec: CNNSpec):
        super().__init__()
        self.add_channel = len(spec.input_shape) == 2
        self.features = nn.ModuleList()
        channels = spec.in_channels
        for block in spec.conv:
            self.features.append(ConvBlock(channels, block, spec.activation))
            channels = block.channels
        c, h, w = spec.feature_shape()
        self.drop = nn.Dropout(spec.dropout)
        self.layers, width = dense_stack(c * h * w, spec.hidden, spec.activation, spec.dropout)
        self.head = nn.Linear(width, spec.num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.add_channel:
            x = x.unsqueeze(1)
        for block in self.features:
            x = block(x)
        x = self.drop(x.flatten(1))
        for layer in self.layers:
            x = layer(x)
        out: torch.Tensor = self.head(x)
        return out
