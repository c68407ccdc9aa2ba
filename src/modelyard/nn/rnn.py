"""``rnn``: recurrent networks (Elman RNN, LSTM, GRU) over sequences."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from modelyard.nn.spec_base import Dim, Rate, SpecBase


class RNNSpec(SpecBase):
    """A recurrent stack over ``[T, F]`` vectors, or ``[T]`` token ids with ``vocab_size``.

    Example: ``{"arch": "rnn", "cell": "gru", "input_shape": [8, 8], "hidden_size": 64,
    "num_outputs": 10}``.
    """

    arch: Literal["rnn"] = "rnn"
    cell: Literal["rnn", "lstm", "gru"] = Field(default="lstm", description="Recurrent cell.")
    hidden_size: Dim = Field(default=64, description="Hidden state size per direction.")
    num_layers: Dim = Field(default=1, description="Stacked recurrent layers.")
    bidirectional: bool = Field(default=False, description="Read the sequence both ways.")
    dropout: Rate = Field(default=0.0, description="Dropout between layers and before the head.")
    vocab_size: Dim | None = Field(default=None, description="Token ids in [0, vocab_size).")
    embedding_dim: Dim | None = Field(
        default=None, description="Token embedding size; default hidden_size."
    )
    pooling: Literal["last", "mean", "max"] = Field(
        default="last", description="last: final hidden state; mean/max: over time."
    )

    @model_validator(mode="after")
    def _shape_matches_input_kind(self) -> RNNSpec:
        if self.vocab_size is None:
            if len(self.input_shape) != 2:
                raise ValueError("input_shape: must be [T, F] (or [T] with vocab_size)")
            if self.embedding_dim is not None:
                raise ValueError("embedding_dim: only token inputs (vocab_size) are embedded")
        elif len(self.input_shape) != 1:
            raise ValueError("input_shape: token inputs are [T]")
        return self

    @property
    def takes_token_ids(self) -> bool:
        """True when the model reads integer token ids rather than float features."""
        return self.vocab_size is not None


class RecurrentNet(nn.Module):
    """``embedding`` (token inputs only), ``rnn``, then ``head``."""

    def __init__(self, spec: RNNSpec):
        super().__init__()
        self.embedding: nn.Embedding | None = None
        if spec.vocab_size is not None:
            features = spec.embedding_dim or spec.hidden_size
            self.embedding = nn.Embedding(spec.vocab_size, features)
        else:
            features = spec.input_shape[1]
        cells: dict[str, type[nn.RNN | nn.LSTM | nn.GRU]] = {
            "rnn": nn.RNN,
            "lstm": nn.LSTM,
            "gru": nn.GRU,
        }
        self.rnn = cells[spec.cell](
            features,
            spec.hidden_size,
            num_layers=spec.num_layers,
            batch_first=True,
            # torch warns about inter-layer dropout with one layer, where it would do nothing.
            dropout=spec.dropout if spec.num_layers > 1 else 0.0,
            bidirectional=spec.bidirectional,
        )
        self.directions = 2 if spec.bidirectional else 1
        self.pooling = spec.pooling
        self.drop = nn.Dropout(spec.dropout)
        self.head = nn.Linear(spec.hidden_size * self.directions, spec.num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            x = self.embedding(x.long())
        outputs, state = self.rnn(x)
        if self.pooling == "mean":
            pooled = outputs.mean(dim=1)
        elif self.pooling == "max":
            pooled = outputs.amax(dim=1)
        else:
            hidden = state[0] if isinstance(state, tuple) else state
            # The top layer's final state, one per direction: [layers*dirs, B, H] -> [B, dirs*H].
            pooled = torch.cat(list(hidden[-self.directions :]), dim=1)
        out: torch.Tensor = self.head(self.drop(pooled))
        return out
