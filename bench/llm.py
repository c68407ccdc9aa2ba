"""Language-model serving: raw ``generate()`` vs the OpenAI endpoint, alone and concurrent.

One GPT-2-style model (random weights, built here, its end token made unreachable so every
request generates exactly ``TOKENS`` tokens) is measured three ways in one run:

- ``generate()``: transformers' own greedy generation in this process, batch 1;
- server, concurrency 1: streamed ``/v1/completions`` through the official openai client
  against ``python -m modelyard serve`` (goal: >= 0.9 x generate());
- server, concurrency 8: eight such streams at once, aggregate tokens/s (goal: >= 3 x
  concurrency 1), which only continuous batching reaches.

Time to first token (TTFT) is the median from sending a request to its first text chunk.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench._server import server_process

TOKENS = 64
PROMPT = "the quick brown fox jumps over the lazy dog"
ROUNDS = 3
CONCURRENCY = 8
MODEL = {"n_layer": 8, "n_embd": 512, "n_head": 8, "n_positions": 512}


@dataclass
class Row:
    name: str
    tokens_per_s: float
    ttft_ms: float


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


def raw_generate(folder: Path) -> Row:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    ids = torch.tensor([tokenizer(PROMPT)["input_ids"]])
    mask = torch.ones_like(ids)

    def run(n: int) -> tuple[float, int]:
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False
            )
        return time.perf_counter() - start, out.shape[1] - ids.shape[1]

    run(TOKENS)  # warm-up
    rates, firsts = [], []
    for _ in range(ROUNDS):
        elapsed, produced = run(TOKENS)
        rates.append(produced / elapsed)
        firsts.append(run(1)[0])
    return Row("generate(), batch 1", statistics.median(rates), statistics.median(firsts) * 1e3)


async def _stream(client: Any) -> tuple[int, float, float]:
    """(tokens, seconds to first text, seconds in all) of one streamed completion."""
    start = time.perf_counter()
    first = None
    tokens = 0
    stream = await client.completions.create(
        model="bench",
        prompt=PROMPT,
        max_tokens=TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].text:
            first = time.perf_counter() - start
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    total = time.perf_counter() - start
    return tokens, first if first is not None else total, total


async def _served(url: str, key: str, concurrency: int) -> Row:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    await _stream(client)  # warm-up
    rates, firsts = [], []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        results = await asyncio.gather(*(_stream(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
        rates.append(sum(tokens for tokens, _, _ in results) / wall)
        firsts.extend(first for _, first, _ in results)
    await client.close()
    label = f"server /v1/completions, concurrency {concurrency}"
    return Row(label, statistics.median(rates), statistics.median(firsts) * 1e3)


def _tar(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=f"bench/{path.name}")
    return buffer.getvalue()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp:
        folder = build_model(Path(tmp) / "model")
        raw = raw_generate(folder)
        with server_process(HF_HUB_OFFLINE="1") as server:
            auth = {"Authorization": f"Bearer {server.key}"}
            with httpx.Client(base_url=server.url, headers=auth, timeout=300) as api:
                api.post("/api/v1/models", json={"name": "bench"}).raise_for_status()
                api.post(
                    "/api/v1/models/bench/versions",
                    params={"filename": "bench.tar"},
                    content=_tar(folder),
                ).raise_for_status()
                api.post(
                    "/api/v1/deployments",
                    json={"name": "bench", "model": "bench", "max_batch_size": 16},
                ).raise_for_status()
            one = asyncio.run(_served(server.url, server.key, 1))
            many = asyncio.run(_served(server.url, server.key, CONCURRENCY))
    params = f"{MODEL['n_layer']} layers x {MODEL['n_embd']}"
    print(f"GPT-2-style model ({params}), {TOKENS} new tokens, greedy, median of {ROUNDS}")
    print(f"{'mode':<42}{'tokens/s':>10}{'TTFT ms':>10}")
    for row in (raw, one, many):
        print(f"{row.name:<42}{row.tokens_per_s:>10.1f}{row.ttft_ms:>10.1f}")
    print(f"server c=1 / generate():   {one.tokens_per_s / raw.tokens_per_s:.2f}  (goal >= 0.9)")
    print(f"server c=8 / server c=1:   {many.tokens_per_s / one.tokens_per_s:.2f}  (goal >= 3)")


if __name__ == "__main__":
    main()
