"""Incremental detokenization gives the text that decoding everything at once gives."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest

from modelyard.llm.detok import StreamDecoder
from tests.llm.tiny import build_tokenizer, build_tools_tokenizer

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    'ünïcödé ✓ — 漢字 and emoji 🚢⚓ {"id": 7, "kind": "yard"}',
]


@pytest.fixture(scope="module", params=["word-level", "byte-level"])
def tokenizer(request: pytest.FixtureRequest) -> Any:
    return build_tokenizer() if request.param == "word-level" else build_tools_tokenizer()


def streamed(decoder: StreamDecoder, ids: Sequence[int]) -> str:
    pieces = [decoder.push(ids[: n + 1])[0] for n in range(len(ids))]
    return "".join(pieces) + decoder.flush(ids)


def test_pushed_pieces_join_into_the_whole_decoded_text(tokenizer: Any) -> None:
    def decode(ids: Sequence[int]) -> str:
        return str(tokenizer.decode(list(ids), skip_special_tokens=True))

    rng = random.Random(0)
    vocab = len(tokenizer)
    cases = [tokenizer(text)["input_ids"] for text in TEXTS]
    # Random ids too: byte-level pieces of characters that never complete, special tokens.
    cases += [[rng.randrange(vocab) for _ in range(40)] for _ in range(20)]
    for ids in cases:
        assert streamed(StreamDecoder(decode, ()), ids) == decode(ids).rstrip("\ufffd")


def test_a_stop_string_across_pieces_ends_the_text_before_it() -> None:
    tokenizer: Any = build_tools_tokenizer()

    def decode(ids: Sequence[int]) -> str:
        return str(tokenizer.decode(list(ids), skip_special_tokens=True))

    ids = tokenizer("ship ahoy ⚓ land ho")["input_ids"]
    decoder = StreamDecoder(decode, ("⚓ la",))
    text, hit = "", False
    for n in range(len(ids)):
        piece, hit = decoder.push(ids[: n + 1])
        text += piece
        if hit:
            break
    assert hit and text == "ship ahoy "
