"""Grammar-constrained decoding: JSON schemas and tool-call grammars as token masks.

A request that must produce JSON of a schema (``response_format``), or a tool call whose
arguments fit the function's parameters, carries a :class:`Constraint`: its grammar compiled
once for the model's tokenizer by llguidance. Each sequence decoding under it holds its own
:class:`Guide` (a matcher that has read the tokens generated so far). Before a token is
chosen, the engine asks every guide of the batch for the set of tokens that keep the output
inside the grammar, packed as a bitmask of 32 tokens a word, and sets the logits of all other
tokens of that row to minus infinity; rows without a guide are not touched, so constrained
and unconstrained sequences share each decoding step.

llguidance was chosen by measurement (docs/llm.md has the table): on CPU its mask and
advance cost per token equals xgrammar's and is far below outlines-core's, it compiles a
schema in a couple of milliseconds (xgrammar ~15 ms, outlines-core ~250 ms), it reads Lark
grammars with embedded JSON schemas (the tool-call wrapper), and it has no dependencies.

Example::

    grammars = GrammarCompiler(tokenizer, vocab_size=50257, stop_token_ids=[50256])
    constraint = grammars.compile(json_schema_grammar(schema), param="response_format")
    guide = constraint.start()  # one per sequence
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    import torch

# JSON as json.dumps writes it (and as chat templates render tool calls with ``tojson``):
# ", " and ": " between items, no other whitespace, so a model cannot pad the output forever.
JSON_OPTIONS: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}


def _with_options(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "x-guidance": {**JSON_OPTIONS, **schema.get("x-guidance", {})}}


def json_schema_grammar(schema: dict[str, Any]) -> str:
    """A grammar for JSON documents valid under ``schema`` (and nothing after them)."""
    return "start: " + lark_json(schema)


def json_object_grammar() -> str:
    """A grammar for any JSON object (``response_format`` ``json_object``)."""
    return json_schema_grammar({"type": "object"})


def lark_json(schema: dict[str, Any]) -> str:
    """A Lark expression (llguidance's ``%json``) matching JSON valid under ``schema``."""
    return "%json " + json.dumps(_with_options(schema))


def lark_string(text: str) -> str:
    """A Lark literal matching ``text`` exactly."""
    return json.dumps(text)


class Guide:
    """One sequence's place in its grammar."""

    __slots__ = ("_matcher",)

    def __init__(self, matcher: Any) -> None:
        self._matcher = matcher

    def consume(self, token: int) -> bool:
        """Advance past ``token``; False if the grammar does not allow it."""
        ok: bool = self._matcher.consume_token(token)
        return ok

    @property
    def done(self) -> bool:
        """The grammar is complete and allows no more tokens (only the end token)."""
        stopped: bool = self._matcher.is_stopped()
        return stopped

    @property
    def error(self) -> str:
        text: str = self._matcher.get_error()
        return text

    @property
    def matcher(self) -> Any:
        return self._matcher


class Constraint:
    """A grammar compiled for one tokenizer; :meth:`start` gives a fresh :class:`Guide`."""

    def __init__(self, matcher: Any, grammar: str) -> None:
        self._prototype = matcher
        self.grammar = grammar

    def start(self) -> Guide:
        return Guide(self._prototype.deep_copy())


class GrammarCompiler:
    """Compiles grammars for one model's tokenizer (its llguidance view is built on first use,
    ~0.3-1 s for a 32k-50k vocabulary, then kept)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]) -> None:
        self._hf = tokenizer
        self.vocab_size = vocab_size
        self._stop = sorted(stop_token_ids)
        self._ll: Any = None
        self._lock = threading.Lock()

    def tokenizer(self) -> Any:
        with self._lock:
            if self._ll is None:
                import llguidance.hf

                self._ll = llguidance.hf.from_tokenizer(
                    self._hf, n_vocab=self.vocab_size, eos_token=self._stop or None
                )
            return self._ll

    def is_single_token(self, text: str) -> bool:
        """Whether ``text`` is one added token of the tokenizer (Lark names it ``<text>``)."""
        added = getattr(self._hf, "get_added_vocab", None)
        return callable(added) and text in added()

    def marker(self, text: str) -> str:
        """A Lark expression for a tag such as ``<tool_call>``: the added token if the
        tokenizer has one for it (llguidance matches those by id), else the text."""
        return text if self.is_single_token(text) else lark_string(text)

    def check(self, grammar: str, param: str) -> None:
        """InvalidInput naming ``param`` if the grammar (or a schema in it) is not valid."""
        import llguidance

        failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
            grammar, self.tokenizer()
        )
        if failed:
            message = (messages[0] if messages else "invalid").strip().splitlines()[0]
            raise InvalidInput(f"{param}: the schema cannot be used: {message}", param=param)

    def compile(self, grammar: str, param: str) -> Constraint:
        """The grammar ready to start guides; InvalidInput naming ``param`` if it is not valid.

        Runs for milliseconds (seconds for huge schemas): call it off the event loop.
        """
        import llguidance

        self.check(grammar, param)
        matcher = llguidance.LLMatcher(self.tokenizer(), grammar, log_level=0)
        if matcher.is_error():
            message = matcher.get_error().strip().splitlines()[0]
            raise InvalidInput(f"{param}: the schema cannot be used: {message}", param=param)
        if not any(matcher.compute_bitmask()):
            raise InvalidInput(
                f"{param}: no token of this model's vocabulary can start such an answer",
                param=param,
            )
        return Constraint(matcher, grammar)


_executor: Any = None
_executor_lock = threading.Lock()


def _parallel() -> Any:
    global _executor
    with _executor_lock:
        if _executor is None:
            import llguidance

            _executor = llguidance.LLExecutor()
        return _executor


def mask_logits(logits: torch.Tensor, guides: Sequence[Guide | None]) -> torch.Tensor:
    """``logits`` ([rows, vocab], float, owned by the caller) with every token that row's
    guide forbids set to minus infinity; rows without a guide are left as they are."""
    import numpy as np
    import torch

    rows = [row for row, guide in enumerate(guides) if guide is not None]
    if not rows:
        return logits
    vocab = logits.shape[1]
    bitmask = torch.zeros((len(rows), (vocab + 31) // 32), dtype=torch.int32)
    matchers = [guides[row].matcher for row in rows]  # type: ignore[union-attr]
    if len(rows) == 1:
        matchers[0].unsafe_compute_mask_ptr(bitmask.data_ptr(), bitmask.numel() * 4)
    else:
        _parallel().unsafe_compute_mask_ptr(
            [(m, i) for i, m in enumerate(matchers)],
            bitmask.data_ptr(),
            bitmask.shape[1] * 4,
            len(rows),
        )
    bits = np.unpackbits(bitmask.numpy().view(np.uint8), axis=-1, bitorder="little")
    forbidden = torch.from_numpy(bits[:, :vocab] == 0).to(logits.device)
    index = torch.tensor(rows, device=logits.device)
    logits[index] = logits[index].masked_fill(forbidden, float("-inf"))
    return logits


__all__ = [
    "JSON_OPTIONS",
    "Constraint",
    "GrammarCompiler",
    "Guide",
    "json_object_grammar",
    "json_schema_grammar",
    "lark_json",
    "lark_string",
    "mask_logits",
]
