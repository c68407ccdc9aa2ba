"""Language-model serving: raw ``generate()`` vs the OpenAI endpoint, alone and concurrent.

One GPT-2-style model (random weights, built here, its end token made unreachable so every
request generates exactly ``TOKENS`` tokens) is measured three ways in one run:

- ``generate()``: transformers' own greedy generation in this process, batch 1;
- server, concurrency 1: streamed ``/v1/completions`` through the official openai client
  against ``python -m modelyard serve`` (goal: >= 0.9 x generate());
- server, concurrency 8: eight such streams at once, aggregate tokens/s (goal: >= 3 x
  concurrency 1), which only continuous batching reaches.

Time to first token (TTFT) is the median from sending a request to its first text chunk.

Constrained decoding is measured on a second model of the same shape whose tokenizer can
write JSON (byte-level BPE, 32,000 tokens trained on the standard library's sources here):
streamed /v1/chat/completions, free text against ``response_format`` json_schema (an array of
records with an enum, a bounded integer, a bounded string and a boolean), the time per token
after the first (goal: constrained <= 1.15 x free).
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
        **MODEL,
    )
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        model.transformer.wte.weight[tokenizer.eos_token_id] = 0.0
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


async def _decode_rate(client: Any, constrained: bool) -> tuple[int, float]:
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
        max_tokens=TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        **extra,
    )
    first = last = None
    tokens = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    assert first is not None and last is not None
    return tokens, last - first


async def _constrained(url: str, key: str) -> tuple[float, float, int]:
    """Median ms per token after the first: free text, json_schema; and tokens constrained."""
    import openai

    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    await _decode_rate(client, False)  # warm-up
    await _decode_rate(client, True)  # and the grammar's tokenizer view, built once
    free, fixed, counts = [], [], []
    for _ in range(ROUNDS * 2):
        n, seconds = await _decode_rate(client, False)
        free.append(seconds / (n - 1))
        n, seconds = await _decode_rate(client, True)
        fixed.append(seconds / max(n - 1, 1))
        counts.append(n)
    await client.close()
    return statistics.median(free) * 1e3, statistics.median(fixed) * 1e3, min(counts)


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
        json_folder = build_json_model(Path(tmp) / "json")
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
                api.post("/api/v1/models", json={"name": "bench-json"}).raise_for_status()
                api.post(
                    "/api/v1/models/bench-json/versions",
                    params={"filename": "bench.tar"},
                    content=_tar(json_folder),
                ).raise_for_status()
                api.post(
                    "/api/v1/deployments",
                    json={"name": "bench-json", "model": "bench-json", "max_batch_size": 16},
                ).raise_for_status()
            one = asyncio.run(_served(server.url, server.key, 1))
            many = asyncio.run(_served(server.url, server.key, CONCURRENCY))
            free_ms, fixed_ms, fixed_tokens = asyncio.run(_constrained(server.url, server.key))
    params = f"{MODEL['n_layer']} layers x {MODEL['n_embd']}"
    print(f"GPT-2-style model ({params}), {TOKENS} new tokens, greedy, median of {ROUNDS}")
    print(f"{'mode':<42}{'tokens/s':>10}{'TTFT ms':>10}")
    for row in (raw, one, many):
        print(f"{row.name:<42}{row.tokens_per_s:>10.1f}{row.ttft_ms:>10.1f}")
    print(f"server c=1 / generate():   {one.tokens_per_s / raw.tokens_per_s:.2f}  (goal >= 0.9)")
    print(f"server c=8 / server c=1:   {many.tokens_per_s / one.tokens_per_s:.2f}  (goal >= 3)")
    print(
        f"decoding ms/token, {JSON_VOCAB}-token byte-level vocabulary: free {free_ms:.2f}, "
        f"json_schema {fixed_ms:.2f} (>= {fixed_tokens} tokens)"
    )
    print(f"constrained / free:        {fixed_ms / free_ms:.2f}  (goal <= 1.15)")


if __name__ == "__main__":
    main()
