"""The continuous-batching engine against transformers' own generate()."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.errors import TooManyRequests
from modelyard.llm import Delta, LanguageModel
from modelyard.llm.detok import StreamDecoder
from modelyard.llm.prefix_cache import BLOCK, PrefixCache
from tests.llm.tiny import build_tiny_lm


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LanguageModel]:
    folder = build_tiny_lm(tmp_path_factory.mktemp("engine") / "m", positions=128, width=64)
    model = LanguageModel.load(folder, device="cpu", max_running=4, max_queue=8, name="t")
    # Larger weights than the default init, so that greedy outputs vary with the prompt.
    import torch

    with torch.no_grad():
        for p in model.model.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    yield model
    model.close()


PROMPTS = [
    "hello there",
    "what is the capital of mars ?",
    "one two three four five six seven eight nine ten",
    "the quick brown fox",
    "good morning",
    "say yes or no",
]


def reference(lm: LanguageModel, prompt: str, n: int) -> str:
    import torch

    ids = torch.tensor([lm.encode(prompt)])
    with torch.no_grad():
        out = lm.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False
        )
    return str(lm.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


def test_batched_greedy_decoding_equals_one_at_a_time(lm: LanguageModel) -> None:
    lengths = [5, 20, 12, 3, 17, 9]

    async def run() -> list[str]:
        async def one(prompt: str, n: int, delay: float) -> str:
            await asyncio.sleep(delay)  # joins while others are mid-generation
            params = lm.sampling(max_tokens=n, temperature=0)
            return await lm.generate(lm.encode(prompt), params).text()

        jobs = [one(p, n, 0.01 * i) for i, (p, n) in enumerate(zip(PROMPTS, lengths, strict=True))]
        return list(await asyncio.gather(*jobs))

    before = lm.engine.steps
    got = asyncio.run(run())
    expected = [reference(lm, p, n) for p, n in zip(PROMPTS, lengths, strict=True)]
    assert got == expected
    assert len(set(expected)) > 1
    assert lm.engine.max_batch_seen > 1
    # Batched: far fewer forward steps than the tokens generated one request at a time.
    assert lm.engine.steps - before < sum(lengths)


def test_prompts_admitted_together_share_one_padded_prefill(lm: LanguageModel) -> None:
    async def run() -> list[str]:
        params = lm.sampling(max_tokens=8, temperature=0)
        streams = [lm.generate(lm.encode(p), params) for p in PROMPTS[:4]]
        return list(await asyncio.gather(*(s.text() for s in streams)))

    assert asyncio.run(run()) == [reference(lm, p, 8) for p in PROMPTS[:4]]


def test_aborted_stream_frees_its_slot(lm: LanguageModel) -> None:
    async def run() -> tuple[int, str]:
        long = lm.generate(lm.encode("hello"), lm.sampling(max_tokens=100, temperature=0))
        async for _delta in long:
            break  # the client goes away after the first token
        for _ in range(100):
            if lm.engine.running == 0:
                break
            await asyncio.sleep(0.01)
        running_after_abort = lm.engine.running
        text = await lm.generate(
            lm.encode("good morning"), lm.sampling(max_tokens=4, temperature=0)
        ).text()
        return running_after_abort, text

    running, text = asyncio.run(run())
    assert running == 0
    assert text == reference(lm, "good morning", 4)


def test_queue_is_bounded(lm: LanguageModel) -> None:
    async def run() -> None:
        params = lm.sampling(max_tokens=30, temperature=0)
        streams = []
        refused = None
        for _ in range(40):
            try:
                streams.append(lm.generate(lm.encode("hello"), params))
            except TooManyRequests as exc:
                refused = exc
                break
        assert refused is not None
        assert len(streams) <= 4 + 8
        for s in streams:
            s.abort()

    asyncio.run(run())


def test_stream_decoder_holds_back_a_possible_stop_string() -> None:
    decoder = StreamDecoder(lambda ids: "".join(chr(i) for i in ids), stop=("END",))
    assert decoder.push([ord("a"), ord("E")]) == ("a", False)
    assert decoder.push([ord("a"), ord("E"), ord("x")]) == ("Ex", False)
    assert decoder.push([ord("a"), ord("E"), ord("x"), ord("E"), ord("N"), ord("D")]) == (
        "",
        True,
    )


def test_sampling_with_a_seed_repeats(lm: LanguageModel, tmp_path: Path) -> None:
    async def run(seed: int) -> str:
        params = lm.sampling(max_tokens=12, temperature=1.0, seed=seed)
        return await lm.generate(lm.encode("hello there"), params).text()

    assert asyncio.run(run(3)) == asyncio.run(run(3))
    assert len({asyncio.run(run(s)) for s in range(5)}) > 1


class _Recorder:
    """An engine observer that keeps what it was told."""

    def __init__(self) -> None:
        self.finished: list[tuple[str, int, int]] = []
        self.first_tokens = 0
        self.admitted = 0
        self.rejected = 0
        self.prefix: list[tuple[int, int]] = []

    def on_reject(self) -> None:
        self.rejected += 1

    def on_admitted(self, queue_s: float) -> None:
        assert queue_s >= 0
        self.admitted += 1

    def on_first_token(self, ttft_s: float) -> None:
        assert ttft_s > 0
        self.first_tokens += 1

    def on_prefix_cache(self, cached_tokens: int, prompt_tokens: int) -> None:
        self.prefix.append((cached_tokens, prompt_tokens))

    def on_finished(
        self, reason: str, prompt_tokens: int, completion_tokens: int, latency_s: float
    ) -> None:
        assert latency_s > 0
        self.finished.append((reason, prompt_tokens, completion_tokens))


def test_the_observer_hears_how_every_sequence_ended(lm: LanguageModel) -> None:
    # A sequence an earlier test abandoned may still be running: only this test's are heard.
    for _ in range(1000):
        if lm.engine.running == 0 and lm.engine.queue_depth == 0:
            break
        time.sleep(0.01)
    recorder = _Recorder()
    lm.engine.observer = recorder
    prompt = lm.encode("hello there")

    async def run() -> None:
        done = await lm.generate(prompt, lm.sampling(max_tokens=3, temperature=0)).text()
        assert done == reference(lm, "hello there", 3)
        left = lm.generate(prompt, lm.sampling(max_tokens=100, temperature=0))
        async for _delta in left:
            break  # the client goes away
        for _ in range(200):
            if len(recorder.finished) == 2:
                break
            await asyncio.sleep(0.01)

    try:
        asyncio.run(run())
    finally:
        lm.engine.observer = None
    assert recorder.finished[0] == ("length", len(prompt), 3)
    assert recorder.finished[1][0] == "abort"
    assert 1 <= recorder.finished[1][2] < 100
    assert recorder.admitted == recorder.first_tokens == 2
    assert recorder.rejected == 0


SHARED = (
    "one two three four five six seven eight nine ten eleven twelve "
    "the quick brown fox jumps over the lazy dog"
)


def test_a_prefix_cache_hit_gives_exactly_the_tokens_a_miss_gives(lm: LanguageModel) -> None:
    assert lm.engine.prefix_cache is not None
    lm.engine.prefix_cache.clear()
    recorder = _Recorder()
    lm.engine.observer = recorder
    first, second = lm.encode(SHARED + " hello there"), lm.encode(SHARED + " good morning")
    assert len(first) > BLOCK and first[:BLOCK] == second[:BLOCK]

    async def tokens(prompt: list[int]) -> list[int]:
        params = lm.sampling(max_tokens=12, temperature=0, logprobs=0)
        stream = lm.generate(prompt, params)
        return [item.token_id for delta in [d async for d in stream] for item in delta.logprobs]

    async def run() -> list[list[int]]:
        return [await tokens(p) for p in (first, first, second)]

    try:
        miss, hit, other = asyncio.run(run())
    finally:
        lm.engine.observer = None
    assert recorder.prefix == [(0, len(first)), (BLOCK, len(first)), (BLOCK, len(second))]
    assert hit == miss
    text = lm.tokenizer.decode(other, skip_special_tokens=True)
    assert text == reference(lm, SHARED + " good morning", 12)


def test_the_prefix_cache_drops_least_recently_used_entries_past_its_bytes() -> None:
    import torch

    def kv(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(torch.full((1, 2, n, 4), float(n)), torch.zeros(1, 2, n, 4))]

    one = 2 * (2 * BLOCK * 4 * 4)  # bytes of one block-long entry (keys and values)
    cache = PrefixCache(max_bytes=2 * one)
    a, b, c = ([t] * (BLOCK + 3) for t in (1, 2, 3))
    cache.store(a, kv(BLOCK + 3))
    cache.store(b, kv(BLOCK + 3))
    assert cache.lookup(a) is not None  # a is now the most recent
    cache.store(c, kv(BLOCK + 3))
    assert cache.nbytes <= 2 * one and len(cache) == 2
    assert cache.lookup(b) is None
    hit = cache.lookup([*a, 9])
    assert hit is not None and hit[1] == BLOCK and hit[0][0][0].shape[2] == BLOCK
    assert cache.lookup(a[:BLOCK]) is None  # at least one token must be left to run


def test_a_reader_that_fell_behind_takes_every_pending_token_as_one_delta(
    lm: LanguageModel,
) -> None:
    prompt = lm.encode("hello there")

    recorder = _Recorder()
    lm.engine.observer = recorder

    async def run() -> list[Delta]:
        stream = lm.generate(prompt, lm.sampling(max_tokens=10, temperature=0, logprobs=0))
        while not recorder.finished:
            await asyncio.sleep(0.01)  # the engine runs to the end while nobody reads
        return [delta async for delta in stream]

    try:
        deltas = asyncio.run(run())
    finally:
        lm.engine.observer = None
    assert len(deltas) == 1
    (delta,) = deltas
    assert delta.text == reference(lm, "hello there", 10)
    assert (delta.completion_tokens, delta.finish_reason) == (10, "length")
    assert len(delta.logprobs) == 10


def test_a_stream_that_is_not_incremental_delivers_its_output_once(lm: LanguageModel) -> None:
    async def run() -> list[Delta]:
        params = lm.sampling(max_tokens=12, temperature=0)
        stream = lm.generate(lm.encode("good morning"), params, incremental=False)
        return [delta async for delta in stream]

    deltas = asyncio.run(run())
    assert [(d.text, d.completion_tokens, d.finish_reason) for d in deltas] == [
        (reference(lm, "good morning", 12), 12, "length")
    ]
