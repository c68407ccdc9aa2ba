"""``transformer``: an encoder with positional encoding over token ids or vectors."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from modelyard.nn.spec_base import Dim, Rate, SpecBase


class TransformerSpec(SpecBase):
    """A pre-norm Transformer encoder and a pooled head.

    ``input_shape`` is ``[T]`` token ids (with ``vocab_size``) or ``[T, F]`` vectors.
    Example: ``{"arch": "transformer", "input_shape": [16], "vocab_size": 100,
    "d_model": 64, "num_heads": 4, "num_layers": 2, "num_outputs": 2}``.
    """

    arch: Literal["transformer"] = "transformer"
    d_model: Dim = Field(default=64, description="Width of the residual stream.")
    num_heads: Dim = Field(default=4, description="Attention heads; must divide d_model.")
    num_layers: Dim = Field(default=2, description="Encoder layers.")
    dim_feedforward: Dim = Field(default=128, description="Hidden width of each MLP.")
    dropout: Rate = Field(default=0.1, description="Dropout in every layer.")
    activation: Literal["relu", "gelu"] = Field(default="gelu", description="MLP activation.")
    vocab_size: Dim | None = Field(default=None, description="Token ids in [0, vocab_size).")
    positional: Literal["sinusoidal", "learned"] = Field(
        default="sinusoidal", description="Fixed sine/cosine table or a learned one."
    )
    max_len: Dim | None = Field(
        default=None, description="Longest sequence accepted; default input_shape[0]."
    )
    pooling: Literal["mean", "cls"] = Field(
        default="mean", description="mean over positions, or a learned [CLS] token."
    )

    @model_validator(mode="after")
    def _consistent(self) -> TransformerSpec:
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads: {self.num_heads} does not divide d_model {self.d_model}")
        if self.vocab_size is None and len(self.input_shape) != 2:
            raise ValueError("input_shape: must be [T, F] (or [T] with vocab_size)")
        if self.vocab_size is not None and len(self.input_shape) != 1:
            raise ValueError("input_shape: token inputs are [T]")
        if self.max_len is not None and self.max_len < self.input_shape[0]:
            raise ValueError(f"max_len: must be at least the sequence length {self.input_shape[0]}")
        return self

    @property
    def takes_token_ids(self) -> bool:
        """True when the model reads integer token ids rather than float features."""
        return self.vocab_size is not None

    @property
    def positions(self) -> int:
        """Rows of the positional table, the [CLS] slot included."""
        return (self.max_len or self.input_shape[0]) + (1 if self.pooling == "cls" else 0)


def sinusoidal_table(length: int, width: int) -> torch.Tensor:
    """The fixed ``[length, width]`` sine/cosine table of Vaswani et al. (2017)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(1e4) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return table


class TransformerNet(nn.Module):
    """``embed``, optional ``cls``, ``position``, ``encoder``, then ``head``."""

    def __init__(self, spec: TransformerSpec):
        super().__init__()
        self.embed: nn.Module = (
            nn.Embedding(spec.vocab_size, spec.d_model)
            if spec.vocab_size is not None
            else nn.Linear(spec.input_shape[1], spec.d_model)
        )
        self.tokens = spec.vocab_size is not None
        self.cls: nn.Parameter | None = None
        if spec.pooling == "cls":
            self.cls = nn.Parameter(torch.randn(1, 1, spec.d_model) * 0.02)
        self.position: nn.Parameter | None = None
        if spec.positional == "learned":
            self.position = nn.Parameter(torch.randn(spec.positions, spec.d_model) * 0.02)
        else:
            # Derived from the spec, so it stays out of the weights file.
            self.register_buffer(
                "table", sinusoidal_table(spec.positions, spec.d_model), persistent=False
            )
        self.drop = nn.Dropout(spec.dropout)
        layer = nn.TransformerEncoderLayer(
            spec.d_model,
            spec.num_heads,
            spec.dim_feedforward,
            spec.dropout,
            activation=spec.activation,
            batch_first=True,
            norm_first=True,
        )
        # Nested tensors only help with padding masks, which this model does not use.
        self.encoder = nn.TransformerEncoder(
            layer, spec.num_layers, norm=nn.LayerNorm(spec.d_model), enable_nested_tensor=False
        )
        self.head = nn.Linear(spec.d_model, spec.num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.embed(x.long() if self.tokens else x)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)
        table = self.position if self.position is not None else self.get_buffer("table")
        if h.shape[1] > table.shape[0]:
            raise ValueError(f"sequence of length {h.shape[1]} is longer than max_len")
        h = self.drop(h + table[: h.shape[1]])
        h = self.encoder(h)
        pooled = h[:, 0] if self.cls is not None else h.mean(dim=1)
        out: torch.Tensor = self.head(pooled)
        return out
