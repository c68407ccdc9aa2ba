"""``cnn``: 2-D convolution stacks with pooling, for images."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from modelyard.nn.blocks import dense_stack, make_activation
from modelyard.nn.spec_base import Activation, Dim, Rate, SpecBase


class ConvSpec(BaseModel):
    """One convolution block: conv, optional batch norm, activation, optional pooling."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: Dim = Field(description="Output channels of the convolution.")
    kernel_size: Dim = Field(default=3, description="Side of the square kernel.")
    stride: Dim = Field(default=1, description="Stride of the convolution.")
    padding: Literal["same", "valid"] | Annotated[int, Field(ge=0)] = Field(
        default="same", description="'same' keeps the size (stride 1 only), 'valid' is 0."
    )
    pool: Literal["max", "avg", "none"] = Field(default="max", description="Pooling after it.")
    pool_size: Dim = Field(default=2, description="Side (and stride) of the pooling window.")
    batch_norm: bool = Field(default=False, description="Batch norm before the activation.")

    @model_validator(mode="after")
    def _same_needs_stride_one(self) -> ConvSpec:
        if self.padding == "same" and self.stride != 1:
            raise ValueError("padding: 'same' needs stride 1; give a number or 'valid'")
        return self

    def output_size(self, size: int) -> int:
        """Side of the feature map this block makes from a map of side ``size``."""
        if self.padding != "same":
            pad = 0 if self.padding == "valid" else self.padding
            size = (size + 2 * pad - self.kernel_size) // self.stride + 1
        if self.pool != "none" and size > 0:
            size //= self.pool_size
        return size


def _default_conv() -> list[ConvSpec]:
    return [ConvSpec(channels=32), ConvSpec(channels=64)]


class CNNSpec(SpecBase):
    """Convolution blocks, then dense layers, then the head.

    ``input_shape`` is ``[C, H, W]``, or ``[H, W]`` for one channel. Example for 8x8
    digits: ``{"arch": "cnn", "input_shape": [1, 8, 8], "conv": [{"channels": 16},
    {"channels": 32}], "num_outputs": 10}``.
    """

    arch: Literal["cnn"] = "cnn"
    conv: list[ConvSpec] = Field(
        default_factory=_default_conv, min_length=1, description="The convolution blocks."
    )
    hidden: list[Dim] = Field(default_factory=list, description="Dense layers after them.")
    activation: Activation = Field(default="relu", description="Activation everywhere.")
    dropout: Rate = Field(default=0.0, description="Dropout on the flattened features.")

    @model_validator(mode="after")
    def _image_survives(self) -> CNNSpec:
        if len(self.input_shape) not in (2, 3):
            raise ValueError("input_shape: must be [C, H, W] or [H, W]")
        height, width = self.input_shape[-2:]
        for index, block in enumerate(self.conv):
            height, width = block.output_size(height), block.output_size(width)
            if height < 1 or width < 1:
                raise ValueError(
                    f"conv[{index}]: the {self.input_shape[-2]}x{self.input_shape[-1]} input "
                    "shrinks to nothing here; use fewer blocks, padding or smaller pooling"
                )
        return self

    @property
    def in_channels(self) -> int:
        """Channels of the input image."""
        return self.input_shape[0] if len(self.input_shape) == 3 else 1

    def feature_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the last block's feature map."""
        height, width = self.input_shape[-2:]
        for block in self.conv:
            height, width = block.output_size(height), block.output_size(width)
        return self.conv[-1].channels, height, width


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
