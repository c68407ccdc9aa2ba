"""``rnn``: recurrent networks (Elman RNN, LSTM, GRU) over sequences."""

from __future__ import annotations

import torch
from torch import nn

from modelyard.nn.specs import RNNSpec


def _private_cells() -> dict[str, type[nn.Module]]:
    """Opacus's recurrent layers, whose per-example gradients it can compute; their
    parameters (and state dicts) are named as PyTorch's, so weights move between the two."""
    # Opacus is loaded only by private training.
    from opacus.layers import DPGRU, DPLSTM, DPRNN

    return {"rnn": DPRNN, "lstm": DPLSTM, "gru": DPGRU}


class RecurrentNet(nn.Module):
    """``embedding`` (token inputs only), ``rnn``, then ``head``.

    ``private`` builds the recurrent layer from Opacus's DP variants (same parameters and
    outputs) for differentially private training.
    """

    def __init__(self, spec: RNNSpec, *, private: bool = False):
        super().__init__()
        self.embedding: nn.Embedding | None = None
        if spec.vocab_size is not None:
            features = spec.embedding_dim or spec.hidden_size
            self.embedding = nn.Embedding(spec.vocab_size, features)
        else:
            features = spec.input_shape[1]
        cells: dict[str, type[nn.Module]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
        if private:
            cells = _private_cells()
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
