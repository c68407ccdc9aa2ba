"""Choosing the next token (greedy, temperature and nucleus sampling), and its log-probability."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from modelyard.llm.grammar import Constraint, Guide


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence is generated.

    ``temperature`` 0 means greedy decoding; ``seed`` makes sampling repeatable;
    generation stops at ``max_tokens`` new tokens, at a token of ``stop_token_ids`` (not
    shown in the text) or where the text would contain one of ``stop`` (cut before it).
    ``logprobs``, when set, asks for each chosen token's log-probability and that many of the
    most likely tokens at its position (0: the chosen token's only).

    Before a token is chosen its logits are adjusted as OpenAI's API does:
    ``logit_bias`` adds a bias to given tokens, and a token already generated ``c`` times loses
    ``c * frequency_penalty + presence_penalty``. With a ``constraint`` (a grammar: a JSON
    schema, a tool call), every token the grammar does not allow next is then masked out.
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stop_token_ids: frozenset[int] = field(default_factory=frozenset)
    logprobs: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    constraint: Constraint | None = None

    @property
    def adjusts_logits(self) -> bool:
        return bool(self.logit_bias or self.presence_penalty or self.frequency_penalty)

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


def adjust_logits(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generated: list[list[int]],
    guides: Sequence[Guide | None] = (),
) -> torch.Tensor:
    """``logits`` with each row's bias and penalties applied, then the tokens its guide's
    grammar forbids masked out (a copy when any row has some; other rows are untouched)."""
    import torch

    rows = [row for row, p in enumerate(params) if p.adjusts_logits]
    constrained = any(guide is not None for guide in guides)
    if not rows and not constrained:
        return logits
    logits = logits.clone()
    for row in rows:
        p = params[row]
        if p.logit_bias:
            ids = torch.tensor([t for t, _ in p.logit_bias], device=logits.device)
            bias = torch.tensor([b for _, b in p.logit_bias], device=logits.device)
            logits[row, ids] += bias.to(logits.dtype)
        if generated[row] and (p.presence_penalty or p.frequency_penalty):
            seen = torch.tensor(generated[row], device=logits.device)
            ids, counts = torch.unique(seen, return_counts=True)
            penalty = counts.to(logits.dtype) * p.frequency_penalty + p.presence_penalty
            logits[row, ids] -= penalty
    if constrained:
        from modelyard.llm.grammar import mask_logits

        logits = mask_logits(logits, guides)
    return logits


def sample_next(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
    generated: list[list[int]] | None = None,
    guides: Sequence[Guide | None] = (),
) -> list[int]:
    """One next token per row of ``logits`` ([rows, vocab]), each row with its own params;
    ``generated`` holds each row's tokens so far (for the penalties), ``guides`` each row's
    grammar state (None: unconstrained)."""
    import torch

    logits = adjust_logits(logits.float(), params, generated or [[] for _ in params], guides)
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


@dataclass(frozen=True)
class TokenLogprob:
    """A chosen token's log-probability under the model, and the most likely tokens there.

    The distribution is the model's own (``log_softmax`` of its logits), whatever the
    temperature or top-p the token was sampled with.
    """

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()
    """``(token_id, logprob)`` of the most likely tokens, most likely first."""


def logprobs_of(
    logits: torch.Tensor, tokens: list[int], params: list[SamplingParams]
) -> list[TokenLogprob | None]:
    """Per row of ``logits`` ([rows, vocab]): the chosen token's log-probability and the top
    ``params[row].logprobs`` alternatives, or None where the row did not ask for them."""
    wanted = [row for row, p in enumerate(params) if p.logprobs is not None]
    out: list[TokenLogprob | None] = [None] * len(tokens)
    if not wanted:
        return out
    import torch

    logprobs = torch.log_softmax(logits[wanted].float(), dim=-1)
    widest = max(params[row].logprobs or 0 for row in wanted)
    top_values, top_ids = (
        torch.topk(logprobs, widest, dim=-1) if widest else (logprobs[:, :0], logprobs[:, :0])
    )
    for i, row in enumerate(wanted):
        k = params[row].logprobs or 0
        chosen = float(logprobs[i, tokens[row]])
        ids, values = top_ids[i, :k].tolist(), top_values[i, :k].tolist()
        top = tuple((int(t), float(v)) for t, v in zip(ids, values, strict=True))
        out[row] = TokenLogprob(tokens[row], chosen, top)
    return out


__all__ = [
    "SamplingParams",
    "TokenLogprob",
    "adjust_logits",
    "logprobs_of",
    "make_generator",
    "sample_next",
]
