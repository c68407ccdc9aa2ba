"""The running batch of a decoder: one KV cache shared by every sequence in it.

Rows of the cache are sequences; columns are positions, left-padded so that every row ends
at the same column. ``mask`` marks real positions (1) and padding (0). Sequences join by
having their prompts' cache (prompts admitted together run as one padded batch) padded
into the batch, and leave by having their rows dropped; columns that no remaining row uses
are trimmed away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

KV = list[tuple["torch.Tensor", "torch.Tensor"]]


def cache_tensors(cache: Any) -> KV:
    """(keys, values) per layer, [batch, heads, positions, dim], of a transformers cache."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return [(k, v) for k, v in cache]


def build_cache(kv: KV, config: Any) -> Any:
    """A transformers ``DynamicCache`` over the given tensors (no copy)."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=kv, config=config)


@dataclass
class RunningBatch:
    """KV cache, padding mask and last sampled token of the sequences being decoded."""

    kv: KV = field(default_factory=list)
    mask: torch.Tensor | None = None
    last: torch.Tensor | None = None
    _cache: Any = field(default=None, repr=False)
    """The model's cache over ``kv`` between two steps (None: build it from ``kv``)."""

    @property
    def size(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[0])

    def add(self, kv: KV, mask: torch.Tensor, tokens: list[int]) -> None:
        """Append sequences whose prompt cache is ``kv`` ([n, heads, positions, dim]) with
        padding ``mask`` ([n, positions]) and their first sampled ``tokens``."""
        import torch

        new_last = torch.tensor(tokens, dtype=torch.long, device=mask.device)
        self._cache = None
        if self.mask is None or self.last is None:
            self.kv, self.mask, self.last = kv, mask, new_last
            return
        width = max(self.mask.shape[1], mask.shape[1])
        self.kv = [
            (
                torch.cat([_pad_left(k, width), _pad_left(nk, width)]),
                torch.cat([_pad_left(v, width), _pad_left(nv, width)]),
            )
            for (k, v), (nk, nv) in zip(self.kv, kv, strict=True)
        ]
        self.mask = torch.cat([_pad_left_2d(self.mask, width), _pad_left_2d(mask, width)])
        self.last = torch.cat([self.last, new_last])

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in this order); drop columns no kept row uses."""
        import torch

        self._cache = None
        if not rows or self.mask is None or self.last is None:
            self.kv, self.mask, self.last = [], None, None
            return
        index = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        used = mask.sum(dim=0).nonzero()
        start = int(used[0].item()) if used.numel() else mask.shape[1]
        self.mask = mask[:, start:]
        self.last = self.last.index_select(0, index)
        self.kv = [
            (k.index_select(0, index)[:, :, start:], v.index_select(0, index)[:, :, start:])
            for k, v in self.kv
        ]

    def cache(self, config: Any) -> Any:
        """The cache to hand the model for the next step: built once after rows join or
        leave (a copy of ``kv`` with room to grow), then written in place step after step."""
        if self._cache is None:
            # Imports torch and transformers, which importing this module must not.
            from modelyard.llm.kv_cache import preallocated_cache

            self._cache = preallocated_cache(self.kv, config)
        return self._cache

    def step_inputs(self) -> dict[str, torch.Tensor]:
        """Model inputs for decoding one more token in every row."""
        import torch

        assert self.mask is not None and self.last is not None
        positions = self.mask.sum(dim=1, keepdim=True)
        ones = torch.ones_like(positions)
        return {
            "input_ids": self.last[:, None],
            "attention_mask": torch.cat([self.mask, ones], dim=1),
            "position_ids": positions,
        }

    def advance(self, kv: KV, tokens: list[int]) -> None:
        """Take the cache after a decoding step (the one :meth:`cache` gave, now one column
        longer) and the tokens it produced."""
        import torch

        assert self.mask is not None
        self.kv = kv
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        self.last = torch.tensor(tokens, dtype=torch.long, device=self.mask.device)


def prefill_inputs(prompts: list[list[int]], device: torch.device) -> dict[str, torch.Tensor]:
    """Left-padded ids, mask and positions to run several prompts in one forward pass."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "position_ids": positions.to(device),
    }


def select_rows(kv: KV, rows: list[int]) -> KV:
    """The cache of ``rows`` only."""
    import torch

    index = torch.tensor(rows, dtype=torch.long, device=kv[0][0].device)
    return [(k.index_select(0, index), v.index_select(0, index)) for k, v in kv]


def _pad_left(t: torch.Tensor, width: int) -> torch.Tensor:
    import torch

    missing = width - t.shape[2]
    if missing == 0:
        return t
    pad = torch.zeros((*t.shape[:2], missing, t.shape[3]), dtype=t.dtype, device=t.device)
    return torch.cat([pad, t], dim=2)


def _pad_left_2d(t: torch.Tensor, width: int) -> torch.Tensor:
    import torch

    missing = width - t.shape[1]
    if missing == 0:
        return t
    return torch.cat([torch.zeros((t.shape[0], missing), dtype=t.dtype, device=t.device), t], 1)


__all__ = ["RunningBatch", "build_cache", "cache_tensors", "prefill_inputs", "select_rows"]
