"""Every request field of OpenAI's chat, completions and embeddings APIs is honoured or refused.

The fields are read from the installed ``openai`` package's own request types, so a field a
newer client learns to send fails this test until the server says what it does with it. A
refused field answers 400 in OpenAI's shape with ``param`` naming it; none is dropped.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openai.types import completion_create_params, embedding_create_params
from openai.types.chat import completion_create_params as chat_create_params

from tests.llm.test_embeddings_api import minilm  # noqa: F401
from tests.support.server import LiveServer

OK, REFUSED = 200, 400

# field: [(value, expected status), ...] — every field of the client's request type.
CHAT: dict[str, list[tuple[Any, int]]] = {
    "audio": [({"voice": "alloy", "format": "wav"}, REFUSED)],
    "frequency_penalty": [(0.5, OK), (3.0, REFUSED)],
    "function_call": [("auto", REFUSED)],
    "functions": [([{"name": "f", "parameters": {}}], REFUSED)],
    "logit_bias": [({"1": 1.0}, OK), ({"1": 101}, REFUSED)],
    "logprobs": [(True, OK)],
    "max_completion_tokens": [(2, OK), (0, REFUSED)],
    "max_tokens": [(2, OK), (0, REFUSED)],
    "messages": [([{"role": "user", "content": "hi"}], OK), ([], REFUSED)],
    "metadata": [({"team": "a"}, OK)],
    "modalities": [(["text"], OK), (["audio"], REFUSED)],
    "model": [("tiny-tools", OK)],
    "moderation": [({"model": "omni"}, REFUSED)],
    "n": [(2, OK), (17, REFUSED)],
    "parallel_tool_calls": [(False, OK)],
    "prediction": [({"type": "content", "content": "hi"}, REFUSED)],
    "presence_penalty": [(0.5, OK), (-3.0, REFUSED)],
    "prompt_cache_key": [("k", OK)],
    "prompt_cache_options": [({}, OK)],
    "prompt_cache_retention": [("24h", OK)],
    "reasoning_effort": [("low", REFUSED)],
    "response_format": [
        ({"type": "text"}, OK),
        ({"type": "json_object"}, OK),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}, OK),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no"}}}, REFUSED),
        ({"type": "xml"}, REFUSED),
    ],
    "safety_identifier": [("u-1", OK)],
    "seed": [(3, OK)],
    "service_tier": [("auto", OK)],
    "stop": [(["\n"], OK), (["a", "b", "c", "d", "e"], REFUSED)],
    "store": [(False, OK)],
    "stream_options": [({"include_usage": True}, OK)],
    "temperature": [(0.5, OK), (2.5, REFUSED)],
    "tool_choice": [("none", OK), ("auto", REFUSED)],  # without tools
    "tools": [
        ([{"type": "function", "function": {"name": "f"}}], OK),
        ([{"type": "custom", "custom": {"name": "f"}}], REFUSED),
    ],
    "top_logprobs": [(2, REFUSED)],  # without logprobs: true
    "top_p": [(0.9, OK), (0.0, REFUSED)],
    "user": [("u-1", OK)],
    "verbosity": [("low", REFUSED)],
    "web_search_options": [({}, REFUSED)],
}
COMPLETIONS: dict[str, list[tuple[Any, int]]] = {
    "best_of": [(1, OK), (3, REFUSED)],
    "echo": [(True, OK)],
    "frequency_penalty": [(0.5, OK)],
    "logit_bias": [({"1": -1.0}, OK)],
    "logprobs": [(2, OK), (6, REFUSED)],
    "max_tokens": [(2, OK)],
    "model": [("tiny", OK)],
    "n": [(2, OK)],
    "presence_penalty": [(0.5, OK)],
    "prompt": [("hello", OK), ([], REFUSED)],
    "seed": [(3, OK)],
    "stop": [("\n", OK)],
    "stream_options": [({"include_usage": True}, OK)],
    "suffix": [("and then", REFUSED)],
    "temperature": [(0.0, OK)],
    "top_p": [(0.5, OK)],
    "user": [("u-1", OK)],
}
EMBEDDINGS: dict[str, list[tuple[Any, int]]] = {
    "dimensions": [(384, OK), (0, REFUSED)],
    "encoding_format": [("base64", OK), ("hex", REFUSED)],
    "input": [("hello", OK)],
    "model": [("minilm", OK)],
    "user": [("u-1", OK)],
}

ROUTES = [
    (
        "/v1/chat/completions",
        chat_create_params.CompletionCreateParamsBase,
        CHAT,
        {"model": "tiny-tools", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    ),
    (
        "/v1/completions",
        completion_create_params.CompletionCreateParamsBase,
        COMPLETIONS,
        {"model": "tiny", "prompt": "hi", "max_tokens": 2},
    ),
    (
        "/v1/embeddings",
        embedding_create_params.EmbeddingCreateParams,
        EMBEDDINGS,
        {"model": "minilm", "input": "hi"},
    ),
]


@pytest.mark.parametrize(("path", "params", "table", "base"), ROUTES, ids=[r[0] for r in ROUTES])
def test_every_field_of_the_openai_request_is_honoured_or_refused_by_name(
    llm_server: LiveServer,
    tiny_deployed: str,
    tools_deployed: str,
    minilm: str,  # noqa: F811
    path: str,
    params: type,
    table: dict[str, list[tuple[Any, int]]],
    base: dict[str, Any],
) -> None:
    assert set(table) == set(params.__annotations__), "classify the client's new fields"
    headers = {"Authorization": f"Bearer {llm_server.admin_key}"}
    wrong = []
    with httpx.Client(base_url=llm_server.url, headers=headers, timeout=120) as client:
        for field, cases in table.items():
            for value, status in cases:
                reply = client.post(path, json={**base, field: value})
                if reply.status_code != status:
                    wrong.append(f"{field}={value!r}: {reply.status_code} {reply.text[:200]}")
                elif status == REFUSED:
                    error = reply.json()["error"]
                    if not str(error["param"]).startswith(field):
                        wrong.append(f"{field}={value!r}: param {error['param']!r}")
        # A field no version of the API has is refused by name too.
        reply = client.post(path, json={**base, "temperatur": 0.5})
        if reply.status_code != REFUSED or reply.json()["error"]["param"] != "temperatur":
            wrong.append(f"temperatur: {reply.status_code} {reply.text[:200]}")
    assert not wrong, "\n".join(wrong)
