"""``transformer``: an encoder with positional encoding over token ids or vectors."""

from __future__ import annotations

import math

import torch
from torch import nn

from modelyard.nn.specs import TransformerSpec


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
