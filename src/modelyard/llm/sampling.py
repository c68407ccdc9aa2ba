"""Choosing the next token: greedy, temperature and nucleus (top-p) sampling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence is generated.

    ``temperature`` 0 means greedy decoding; ``seed`` makes sampling repeatable;
    generation stops at ``max_tokens`` new tokens, at a token of ``stop_token_ids`` (not
    shown in the text) or where the text would contain one of ``stop`` (cut before it).
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stop_token_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


def make_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    """A private random stream for one sequence (None: the global one)."""
    import torch

    if seed is None:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def sample_next(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
) -> list[int]:
    """One next token per row of ``logits`` ([rows, vocab]), each row with its own params."""
    import torch

    logits = logits.float()
    chosen = torch.argmax(logits, dim=-1)
    out: list[int] = chosen.tolist()
    for row, p in enumerate(params):
        if p.greedy:
            continue
        probs = torch.softmax(logits[row] / p.temperature, dim=-1)
        if p.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < p.top_p
            keep[0] = True
            filtered = torch.zeros_like(probs)
            filtered[order[keep]] = sorted_probs[keep]
            probs = filtered / filtered.sum()
        out[row] = int(torch.multinomial(probs, 1, generator=generators[row]).item())
    return out


__all__ = ["SamplingParams", "make_generator", "sample_next"]
