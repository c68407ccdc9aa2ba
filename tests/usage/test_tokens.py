"""Tokens per minute on language models: prompt tokens + max_tokens are charged up front,
and corrected to what the reply used once it ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.llm.conftest import admin, llm_server, tiny_deployed, tiny_folder  # noqa: F401
from tests.support.server import LiveServer
from tests.usage.conftest import make_key

LIMIT = 50  # the tiny model's context is 64 tokens


@pytest.fixture(scope="module")
def limited(
    llm_server: LiveServer,  # noqa: F811
    admin: httpx.Client,  # noqa: F811
    tiny_deployed: str,  # noqa: F811
) -> Iterator[httpx.Client]:
    admin.put("/api/v1/deployments/tiny/acl", json={"public": True, "grants": []})
    key = make_key(admin, "tokens-user", ["infer", "read"])
    reply = admin.put(f"/api/v1/limits/keys/{key.id}", json={"tokens_per_minute": LIMIT})
    assert reply.status_code == 200, reply.text
    with key.client(llm_server.url) as client:
        yield client


def chat(client: httpx.Client, max_tokens: int, **extra: object) -> httpx.Response:
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": max_tokens,
        "temperature": 0,
        **extra,
    }
    return client.post("/v1/chat/completions", json=body)


def test_a_chat_whose_max_tokens_would_exceed_the_limit_is_refused(
    limited: httpx.Client,
    llm_server: LiveServer,  # noqa: F811
) -> None:
    refused = chat(limited, max_tokens=LIMIT + 5)
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"
    assert "max_tokens" in error["message"]
    assert refused.headers["x-ratelimit-limit-tokens"] == str(LIMIT)
    assert "x-ratelimit-remaining-tokens" in refused.headers
    assert "x-ratelimit-reset-tokens" in refused.headers
    assert "retry-after" in refused.headers
    # The official client sees OpenAI's RateLimitError.
    client = openai.OpenAI(
        base_url=f"{llm_server.url}/v1",
        api_key=limited.headers["authorization"].removeprefix("Bearer "),
        max_retries=0,
    )
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=LIMIT + 5
        )


def test_the_charge_is_corrected_to_the_tokens_the_reply_used(
    limited: httpx.Client,
    tiny_folder: Path,  # noqa: F811
) -> None:
    from transformers import AutoTokenizer

    eos = AutoTokenizer.from_pretrained(str(tiny_folder)).eos_token_id
    # The end of text is all but certain first, so the reply uses far less than max_tokens.
    first = chat(limited, max_tokens=20, logit_bias={str(eos): 100})
    assert first.status_code == 200, first.text
    usage = first.json()["usage"]
    assert usage["completion_tokens"] < 20
    reserved = usage["prompt_tokens"] + 20
    left = int(first.headers["x-ratelimit-remaining-tokens"])
    time.sleep(0.3)  # the correction is made as the reply ends, off the answer's path
    second = chat(limited, max_tokens=20, logit_bias={str(eos): 100})
    assert second.status_code == 200, second.text
    given_back = reserved - usage["total_tokens"]
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == left + given_back - reserved


def test_usage_sums_the_tokens_the_replies_reported(
    llm_server: LiveServer,  # noqa: F811
    admin: httpx.Client,  # noqa: F811
    tiny_deployed: str,  # noqa: F811
) -> None:
    start = int(time.time()) - 5
    key = make_key(admin, "token-counter", ["infer", "read"])
    sent = {"input": 0, "output": 0}
    with key.client(llm_server.url) as client:
        for max_tokens in (3, 5, 8):
            reply = chat(client, max_tokens=max_tokens)
            assert reply.status_code == 200, reply.text
            sent["input"] += reply.json()["usage"]["prompt_tokens"]
            sent["output"] += reply.json()["usage"]["completion_tokens"]
        params = {"start": start, "bucket_width": "1h", "group_by": "key,deployment"}
        deadline = time.monotonic() + 10
        while True:
            page = client.get("/api/v1/usage", params=params).json()
            results = [r for b in page["data"] for r in b["results"]]
            if sum(r["num_model_requests"] for r in results) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    assert [(r["api_key_id"], r["deployment"]) for r in results] == [(key.id, "tiny")]
    assert results[0]["num_model_requests"] == 3
    assert results[0]["input_tokens"] == sent["input"]
    assert results[0]["output_tokens"] == sent["output"]
