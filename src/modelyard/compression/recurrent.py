"""Recurrent layers rebuilt from ``Linear`` gates, so that Linear quantization reaches them.

torchao quantizes ``nn.Linear`` weights; ``nn.LSTM``/``nn.GRU``/``nn.RNN`` keep theirs in
flat buffers that a fused kernel reads. :class:`UnrolledRecurrent` computes the same thing
with two ``Linear`` layers per layer and direction (``ih`` over the whole sequence at once,
``hh`` step by step), copies the weights across, and returns what the original returns
(``outputs, h_n`` or ``outputs, (h_n, c_n)``, batch first). It is for inference: dropout
between layers is not applied.
"""

from __future__ import annotations

import torch
from torch import nn

RECURRENT_TYPES: tuple[type[nn.Module], ...] = (nn.LSTM, nn.GRU, nn.RNN)
_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _cell_kind(module: nn.Module) -> str:
    if isinstance(module, nn.LSTM):
        return "lstm"
    if isinstance(module, nn.GRU):
        return "gru"
    return "rnn"


class GateCell(nn.Module):
    """The two projections of one layer and direction."""

    def __init__(self, input_size: int, hidden_size: int, gates: int, bias: bool) -> None:
        super().__init__()
        self.ih = nn.Linear(input_size, gates * hidden_size, bias=bias)
        self.hh = nn.Linear(hidden_size, gates * hidden_size, bias=bias)


class UnrolledRecurrent(nn.Module):
    """A batch-first LSTM, GRU or tanh RNN computed with ``Linear`` gates.

    ``cells.<layer * directions + direction>`` holds the gates, in torch's order
    (LSTM: input, forget, cell, output; GRU: reset, update, new).
    """

    def __init__(
        self,
        kind: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if kind not in _GATES:
            raise ValueError(f"unknown recurrent kind {kind!r}")
        self.kind = kind
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.directions = 2 if bidirectional else 1
        self.cells = nn.ModuleList()
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * self.directions
            for _direction in range(self.directions):
                self.cells.append(GateCell(width, hidden_size, _GATES[kind], bias))

    @classmethod
    def like(cls, module: nn.Module) -> UnrolledRecurrent:
        """An unrolled twin of ``module`` (uninitialised weights, same device and dtype)."""
        if not isinstance(module, nn.RNNBase):
            raise TypeError(f"{type(module).__name__} is not a recurrent layer")
        if not module.batch_first:
            raise ValueError("only batch-first recurrent layers can be unrolled")
        if isinstance(module, nn.RNN) and module.nonlinearity != "tanh":
            raise ValueError("only tanh RNNs can be unrolled")
        if module.proj_size:
            raise ValueError("LSTMs with projections cannot be unrolled")
        weight = getattr(module, "weight_ih_l0")  # noqa: B009
        assert isinstance(weight, torch.Tensor)
        with torch.device(weight.device):
            twin = cls(
                _cell_kind(module),
                module.input_size,
                module.hidden_size,
                module.num_layers,
                module.bidirectional,
                module.bias,
            )
        return twin.to(weight.dtype)

    @classmethod
    def from_module(cls, module: nn.Module) -> UnrolledRecurrent:
        """An unrolled copy of ``module`` with its weights."""
        twin = cls.like(module)
        with torch.no_grad():
            for index, cell in enumerate(twin.cells):
                assert isinstance(cell, GateCell)
                layer, direction = divmod(index, twin.directions)
                suffix = f"l{layer}" + ("_reverse" if direction else "")
                cell.ih.weight.copy_(getattr(module, f"weight_ih_{suffix}"))
                cell.hh.weight.copy_(getattr(module, f"weight_hh_{suffix}"))
                if cell.ih.bias is not None and cell.hh.bias is not None:
                    cell.ih.bias.copy_(getattr(module, f"bias_ih_{suffix}"))
                    cell.hh.bias.copy_(getattr(module, f"bias_hh_{suffix}"))
        return twin

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        batch = x.shape[0]
        hidden: list[torch.Tensor] = []
        cells: list[torch.Tensor] = []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                cell = self.cells[layer * self.directions + direction]
                assert isinstance(cell, GateCell)
                seq, h, c = self._run(cell, layer_input, batch, reverse=direction == 1)
                outputs.append(seq)
                hidden.append(h)
                cells.append(c)
            layer_input = torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]
        h_n = torch.stack(hidden)
        if self.kind == "lstm":
            return layer_input, (h_n, torch.stack(cells))
        return layer_input, h_n

    def _run(
        self, cell: GateCell, x: torch.Tensor, batch: int, *, reverse: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = self.hidden_size
        projected = cell.ih(x)
        h = x.new_zeros(batch, size)
        c = x.new_zeros(batch, size)
        steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
        out: list[torch.Tensor] = [h] * x.shape[1]
        for t in steps:
            gates_x = projected[:, t]
            gates_h = cell.hh(h)
            if self.kind == "lstm":
                i, f, g, o = (gates_x + gates_h).chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            elif self.kind == "gru":
                rx, zx, nx = gates_x.chunk(3, dim=1)
                rh, zh, nh = gates_h.chunk(3, dim=1)
                r = torch.sigmoid(rx + rh)
                z = torch.sigmoid(zx + zh)
                n = torch.tanh(nx + r * nh)
                h = (1 - z) * n + z * h
            else:
                h = torch.tanh(gates_x + gates_h)
            out[t] = h
        return torch.stack(out, dim=1), h, c


def unroll(model: nn.Module, names: list[str], *, copy_weights: bool = True) -> None:
    """Replace the recurrent layers ``names`` of ``model`` by :class:`UnrolledRecurrent`."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        original = getattr(parent, child)
        twin = (
            UnrolledRecurrent.from_module(original)
            if copy_weights
            else UnrolledRecurrent.like(original)
        )
        setattr(parent, child, twin)
