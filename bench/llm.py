"""Language-model serving: raw ``generate()``, the engine in process and the OpenAI endpoint.

One GPT-2-style model (random weights, built here, its end token made unreachable so every
request generates exactly ``--tokens`` tokens) is measured in one run, in interleaved rounds
(each round measures every mode once, so a busy machine slows them alike):

- ``generate()``, batch 1: transformers' own greedy generation in this process;
- server, concurrency 1: streamed ``/v1/completions`` through the official openai client
  against ``python -m modelyard serve`` (goal: >= 0.9 x generate() batch 1);
- ``generate()``, padded batch of 8: eight prompts of different lengths, left-padded;
- engine, concurrency 8: the same eight prompts submitted at once to an ``LLMEngine`` in this
  process (continuous batching without HTTP);
- server, concurrency 8: the eight prompts as eight concurrent streams, aggregate tokens/s
  (goals: >= 0.9 x the engine, and >= generate() of the padded batch).

Time to first token (TTFT) is the median from sending a request to its first text chunk (for
generate(), the time to generate one token). Prefix caching: the server answers one token to
a prompt of a 1,000-token prefix and a short question, first with a prefix it has never seen
(a miss: the whole prompt runs), then with a prefix an earlier request left in its prefix
cache (a hit: only the question runs); goal: hit TTFT <= 0.3 x miss.

Constrained decoding is measured on a second model of the same shape whose tokenizer can
write JSON (byte-level BPE, 32,000 tokens trained on the standard library's sources here):
streamed /v1/chat/completions, free text against ``response_format`` json_schema (an array of
records with an enum, a bounded integer, a bounded string and a boolean), the time per token
after the first (goal: overhead <= 15 %).

``python -m bench.llm --quick`` runs one round of each (a few minutes on two busy cores);
the default is three.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._server import server_process

TOKENS = 64
PROMPT = "the quick brown fox jumps over the lazy dog"
# Eight prompts of different lengths: a padded batch for generate(), eight streams elsewhere.
PROMPTS = [
    PROMPT,
    "hello there how are you today",
    "what is the capital of mars ?",
    "tell me a story about a red fox and a blue bird in the forest",
    "one two three four five six seven eight nine ten eleven twelve",
    "say yes or no",
    "good morning good night see you later alligator crocodile",
    "the quick brown fox jumps over the lazy dog again and again",
]
ROUNDS = 3
CONCURRENCY = len(PROMPTS)
PREFIX_TOKENS = 1000
QUESTION_TOKENS = 8
MODEL = {"n_layer": 8, "n_embd": 512, "n_head": 8, "n_positions": 2048}
# The JSON model keeps the 512 positions it was first measured with: the same random weights,
# so the same constrained answers (a different initialisation may close the array at once).
JSON_MODEL = {**MODEL, "n_positions": 512}


@dataclass
class Mode:
    """One way of generating, measured once per round."""

    name: str
    tokens_per_s: list[float] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)

    def add(self, tokens: int, seconds: float, firsts: Sequence[float]) -> None:
        self.tokens_per_s.append(tokens / seconds)
        self.ttft_s.extend(firsts)

    @property
    def rate(self) -> float:
        return statistics.median(self.tokens_per_s)

    @property
    def ttft_ms(self) -> float:
        return statistics.median(self.ttft_s) * 1e3


def build_model(folder: Path) -> Path:
    import torch
    from tests.llm.tiny import build_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer: Any = build_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **MODEL,
    )
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        # A zero embedding gives the end token logit 0, below the best random logit: the
        # model never stops early, so every mode generates the same number of tokens.
        model.transformer.wte.weight[tokenizer.eos_token_id] = 0.0
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


JSON_VOCAB = 32_000
RECORDS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 0, "maximum": 9999},
            "kind": {"type": "string", "enum": ["station", "depot", "stop", "yard"]},
            "name": {"type": "string", "maxLength": 16},
            "open": {"type": "boolean"},
        },
        "required": ["id", "kind", "name", "open"],
        "additionalProperties": False,
    },
}


def build_json_model(folder: Path) -> Path:
    """The bench model's shape with a byte-level BPE tokenizer (any text encodes) and a
    ChatML template; its end token unreachable, like the other one's."""
    import glob
    import sysconfig

    import torch
    from tests.llm.tiny import TOOLS_TEMPLATE
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=JSON_VOCAB,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train(sorted(glob.glob(f"{sysconfig.get_paths()['stdlib']}/*.py")), trainer)
    tokenizer: Any = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = TOOLS_TEMPLATE
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **JSON_MODEL,
    )
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        model.transformer.wte.weight[tokenizer.eos_token_id] = 0.0
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


async def _decode_rate(client: Any, constrained: bool, tokens: int) -> tuple[int, float]:
    """(tokens, seconds from the first to the last text chunk) of one streamed chat."""
    extra: dict[str, Any] = {}
    if constrained:
        extra["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "records", "schema": RECORDS, "strict": True},
        }
    stream = await client.chat.completions.create(
        model="bench-json",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        **extra,
    )
    first = last = None
    produced = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
        if chunk.usage is not None:
            produced = chunk.usage.completion_tokens
    assert first is not None and last is not None
    return produced, last - first


async def _constrained(url: str, key: str, rounds: int, tokens: int) -> tuple[float, float, int]:
    """Median ms per token after the first: free text, json_schema; and tokens constrained."""
    import openai

    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    await _decode_rate(client, False, tokens)  # warm-up
    await _decode_rate(client, True, tokens)  # and the grammar's tokenizer view, built once
    free, fixed, counts = [], [], []
    for _ in range(rounds * 2):
        n, seconds = await _decode_rate(client, False, tokens)
        free.append(seconds / (n - 1))
        n, seconds = await _decode_rate(client, True, tokens)
        fixed.append(seconds / max(n - 1, 1))
        counts.append(n)
    await client.close()
    return statistics.median(free) * 1e3, statistics.median(fixed) * 1e3, min(counts)


class Generate:
    """transformers' generate() in this process, on the bench model."""

    def __init__(self, folder: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
        self.one = tokenizer([PROMPT], return_tensors="pt")
        self.batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)

    def run(self, inputs: Any, n: int) -> tuple[int, float]:
        """(tokens generated in all rows, seconds)."""
        start = time.perf_counter()
        with self.torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        elapsed = time.perf_counter() - start
        return (out.shape[1] - inputs["input_ids"].shape[1]) * out.shape[0], elapsed

    def measure(self, mode: Mode, inputs: Any, tokens: int) -> None:
        produced, seconds = self.run(inputs, tokens)
        mode.add(produced, seconds, [self.run(inputs, 1)[1]])


async def _engine_round(lm: Any, tokens: int) -> tuple[int, float, list[float]]:
    """(tokens, seconds, each stream's TTFT) of the eight prompts submitted at once."""
    start = time.perf_counter()

    async def one(prompt: str) -> tuple[int, float]:
        stream = lm.generate(lm.encode(prompt), lm.sampling(max_tokens=tokens, temperature=0))
        first = None
        async for delta in stream:
            if first is None and delta.text:
                first = time.perf_counter() - start
        return stream.completion_tokens, first if first is not None else 0.0

    results = await asyncio.gather(*(one(prompt) for prompt in PROMPTS))
    seconds = time.perf_counter() - start
    return sum(n for n, _ in results), seconds, [first for _, first in results]


async def _stream(client: Any, prompt: str | list[int], tokens: int) -> tuple[int, float]:
    """(tokens, seconds to first text, or to the end without text) of one streamed completion."""
    start = time.perf_counter()
    first = None
    produced = 0
    stream = await client.completions.create(
        model="bench",
        prompt=prompt,
        max_tokens=tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].text:
            first = time.perf_counter() - start
        if chunk.usage is not None:
            produced = chunk.usage.completion_tokens
    return produced, first if first is not None else time.perf_counter() - start


async def _server_round(
    client: Any, prompts: Sequence[str], tokens: int
) -> tuple[int, float, list[float]]:
    start = time.perf_counter()
    results = await asyncio.gather(*(_stream(client, p, tokens) for p in prompts))
    seconds = time.perf_counter() - start
    return sum(n for n, _ in results), seconds, [first for _, first in results]


async def _prefix_ttft(client: Any, vocab: int, rounds: int) -> tuple[float, float]:
    """Median TTFT (s) of a 1,000-token prefix and a question: never seen, then cached."""
    rng = random.Random(0)

    def tokens(n: int) -> list[int]:
        return [rng.randrange(3, vocab) for _ in range(n)]  # past <unk>, <pad>, <eos>

    misses, hits = [], []
    for _ in range(rounds * 2):
        prefix = tokens(PREFIX_TOKENS)
        misses.append((await _stream(client, prefix + tokens(QUESTION_TOKENS), 1))[1])
        hits.append((await _stream(client, prefix + tokens(QUESTION_TOKENS), 1))[1])
    return statistics.median(misses), statistics.median(hits)


def _tar(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=f"bench/{path.name}")
    return buffer.getvalue()


def _deploy(api: httpx.Client, name: str, folder: Path) -> None:
    api.post("/api/v1/models", json={"name": name}).raise_for_status()
    api.post(
        f"/api/v1/models/{name}/versions", params={"filename": "bench.tar"}, content=_tar(folder)
    ).raise_for_status()
    api.post(
        "/api/v1/deployments", json={"name": name, "model": name, "max_batch_size": 16}
    ).raise_for_status()


@dataclass
class Results:
    modes: list[Mode]
    miss_s: float
    hit_s: float
    free_ms: float
    fixed_ms: float
    fixed_tokens: int


async def _measure(url: str, key: str, folder: Path, rounds: int, tokens: int) -> Results:
    import openai

    from modelyard.llm import LanguageModel

    raw = Generate(folder)
    lm = LanguageModel.load(folder, name="bench-in-process")
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    gen1, srv1 = Mode("generate(), batch 1"), Mode("server /v1/completions, concurrency 1")
    gen8 = Mode(f"generate(), padded batch of {CONCURRENCY}")
    eng8 = Mode(f"engine in process, concurrency {CONCURRENCY}")
    srv8 = Mode(f"server /v1/completions, concurrency {CONCURRENCY}")
    try:
        # Warm-up: every path runs once before anything is timed.
        raw.run(raw.one, tokens)
        raw.run(raw.batch, tokens)
        await _engine_round(lm, tokens)
        await _server_round(client, PROMPTS, tokens)
        for _ in range(rounds):
            raw.measure(gen1, raw.one, tokens)
            srv1.add(*await _server_round(client, [PROMPT], tokens))
            raw.measure(gen8, raw.batch, tokens)
            eng8.add(*await _engine_round(lm, tokens))
            srv8.add(*await _server_round(client, PROMPTS, tokens))
        miss, hit = await _prefix_ttft(client, len(lm.tokenizer), rounds)
    finally:
        lm.close()
        await client.close()
    free_ms, fixed_ms, fixed_tokens = await _constrained(url, key, rounds, tokens)
    return Results([gen1, srv1, gen8, eng8, srv8], miss, hit, free_ms, fixed_ms, fixed_tokens)


def _report(results: Results, rounds: int, tokens: int) -> None:
    gen1, srv1, gen8, eng8, srv8 = results.modes
    params = f"{MODEL['n_layer']} layers x {MODEL['n_embd']}"
    print(f"GPT-2-style model ({params}), {tokens} new tokens, greedy, median of {rounds}")
    print(f"{'mode':<44}{'tokens/s':>10}{'TTFT ms':>10}")
    for mode in results.modes:
        print(f"{mode.name:<44}{mode.rate:>10.1f}{mode.ttft_ms:>10.1f}")

    def ratio(label: str, value: float, goal: str) -> None:
        print(f"{label:<44}{value:>10.2f}  (goal {goal})")

    ratio("server c=1 / generate() batch 1", srv1.rate / gen1.rate, ">= 0.9")
    ratio(f"server c={CONCURRENCY} / engine c={CONCURRENCY}", srv8.rate / eng8.rate, ">= 0.9")
    ratio(f"server c={CONCURRENCY} / generate() batch {CONCURRENCY}", srv8.rate / gen8.rate, ">= 1")
    print(
        f"TTFT, {PREFIX_TOKENS}-token prefix + {QUESTION_TOKENS}-token question: "
        f"miss {results.miss_s * 1e3:.1f} ms, cached prefix {results.hit_s * 1e3:.1f} ms"
    )
    ratio("TTFT cached prefix / miss", results.hit_s / results.miss_s, "<= 0.3")
    print(
        f"decoding ms/token, {JSON_VOCAB}-token byte-level vocabulary: free "
        f"{results.free_ms:.2f}, json_schema {results.fixed_ms:.2f} "
        f"(>= {results.fixed_tokens} tokens)"
    )
    overhead = (results.fixed_ms / results.free_ms - 1) * 100
    print(f"{'constrained decoding overhead per token':<44}{overhead:>9.1f}%  (goal <= 15 %)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.llm",
        description="generate() vs the engine vs the server, prefix caching, constrained "
        "decoding: one table in one run.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        default=bool(os.environ.get("BENCH_QUICK")),
        help="one round of each measurement, a few minutes (also BENCH_QUICK=1)",
    )
    parser.add_argument("--rounds", type=int, default=None, help=f"rounds (default {ROUNDS})")
    parser.add_argument("--tokens", type=int, default=TOKENS, help="new tokens per request")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of this process and the server (default: torch's, one per core); "
        "on a machine busier than its cores, 1 avoids the threads waiting for each other",
    )
    args = parser.parse_args(argv if argv is not None else [])
    rounds = args.rounds or (1 if args.quick else ROUNDS)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    cores = len(os.sched_getaffinity(0))
    import torch

    env = {"HF_HUB_OFFLINE": "1"}
    if args.threads:
        torch.set_num_threads(args.threads)
        env["OMP_NUM_THREADS"] = str(args.threads)
    threads = torch.get_num_threads()
    print(
        f"{cores} cores shared by the client, the server and generate(), load average {load} "
        f"before the run; torch threads {threads} in the server and in this process"
    )
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp:
        folder = build_model(Path(tmp) / "model")
        json_folder = build_json_model(Path(tmp) / "json")
        with server_process(**env) as server:
            auth = {"Authorization": f"Bearer {server.key}"}
            with httpx.Client(base_url=server.url, headers=auth, timeout=300) as api:
                _deploy(api, "bench", folder)
                _deploy(api, "bench-json", json_folder)
            results = asyncio.run(_measure(server.url, server.key, folder, rounds, args.tokens))
    _report(results, rounds, args.tokens)


if __name__ == "__main__":
    main(sys.argv[1:])
