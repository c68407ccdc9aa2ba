"""Tool calls and structured outputs through the official openai client, and the engine
decoding constrained and free sequences in one batch.

The model is the tiny byte-level one whose chat template renders tools in the Hermes format
(tests/llm/tiny.py). Its weights are random: only constrained decoding makes it answer JSON,
so every answer checked here is the grammar's doing. Schemas are bounded (enums, ranges,
maxLength) so that the random model finishes within a few dozen tokens.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from modelyard.llm import LanguageModel
from modelyard.llm.engine import EngineConfig
from modelyard.llm.grammar import json_schema_grammar
from tests.support.server import LiveServer

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 10},
        "unit": {"type": "string", "enum": ["c", "f"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
ANSWER = {
    "type": "object",
    "properties": {"yes": {"type": "boolean"}, "why": {"type": "string", "maxLength": 8}},
    "required": ["yes", "why"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER},
    },
    {"type": "function", "function": {"name": "answer", "parameters": ANSWER}},
]
SCHEMAS = {"get_weather": WEATHER, "answer": ANSWER}
ASK = [{"role": "user", "content": "what is the weather in paris ?"}]


@pytest.fixture(scope="module")
def client(llm_server: LiveServer, tools_deployed: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key=llm_server.admin_key)


def _check_call(call: Any) -> None:
    assert call.type == "function"
    assert call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_tool_choice_required_returns_calls_whose_arguments_validate(
    client: openai.OpenAI,
) -> None:
    reply = client.chat.completions.create(
        model="tiny-tools",
        messages=ASK,  # type: ignore[arg-type]
        tools=TOOLS,
        tool_choice="required",
        max_tokens=120,
        temperature=0,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls
    for call in choice.message.tool_calls:
        _check_call(call)


def test_a_named_function_is_the_one_called_and_it_streams_as_openai_streams_calls(
    client: openai.OpenAI,
) -> None:
    args: dict[str, Any] = {
        "model": "tiny-tools",
        "messages": ASK,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 120,
        "temperature": 0,
    }
    plain = client.chat.completions.create(**args).choices[0]
    assert plain.finish_reason == "tool_calls"
    assert plain.message.tool_calls is not None and len(plain.message.tool_calls) == 1
    call = plain.message.tool_calls[0]
    assert call.function.name == "get_weather"
    _check_call(call)

    # Streamed: the first entry of a call has its index, id, type and name; then fragments of
    # the arguments, which put together are the plain answer's.
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(**args, stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        assert not delta.content
        for entry in delta.tool_calls or []:
            if entry.id is not None:
                assert entry.index not in calls and entry.type == "function"
                assert entry.function is not None and entry.function.name
                calls[entry.index] = {"id": entry.id, "name": entry.function.name, "args": ""}
            assert entry.function is not None
            calls[entry.index]["args"] += entry.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["id"].startswith("call_")
    assert calls[0]["args"] == call.function.arguments


def test_json_schema_answers_validate_plain_and_streamed(client: openai.OpenAI) -> None:
    fmt: Any = {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": WEATHER, "strict": True},
    }
    args: dict[str, Any] = {
        "model": "tiny-tools",
        "messages": ASK,
        "response_format": fmt,
        "max_tokens": 60,
        "temperature": 0,
    }
    plain = client.chat.completions.create(**args).choices[0]
    assert plain.finish_reason == "stop"
    assert plain.message.content is not None
    jsonschema.validate(json.loads(plain.message.content), WEATHER)
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(**args, stream=True)
        if chunk.choices
    )
    assert streamed == plain.message.content
    # Sampled, several choices: each its own, each valid.
    sampled = client.chat.completions.create(**{**args, "temperature": 1.0, "seed": 1, "n": 3})
    for choice in sampled.choices:
        if choice.finish_reason == "stop":
            jsonschema.validate(json.loads(choice.message.content or ""), WEATHER)


def test_json_object_answers_an_object(client: openai.OpenAI, tools_folder: Path) -> None:
    from transformers import AutoTokenizer

    # A random model never closes a string on its own: a bias towards '"' and '}' lets it end
    # the object as soon as the grammar allows, which the grammar alone decides.
    tok = AutoTokenizer.from_pretrained(str(tools_folder))
    bias = {str(tok.convert_tokens_to_ids(t)): 20 for t in ('"', "}")}
    reply = client.chat.completions.create(
        model="tiny-tools",
        messages=ASK,  # type: ignore[arg-type]
        response_format={"type": "json_object"},
        logit_bias=bias,
        max_tokens=30,
        temperature=0,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(json.loads(choice.message.content or ""), dict)


def test_tool_turns_fed_back_are_rendered_by_the_template(
    client: openai.OpenAI, tools_folder: Path
) -> None:
    from transformers import AutoTokenizer

    arguments = '{"city": "paris", "unit": "c", "days": 2}'
    messages: list[Any] = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    reply = client.chat.completions.create(
        model="tiny-tools", messages=messages, tools=TOOLS, max_tokens=4, temperature=0
    )
    tok = AutoTokenizer.from_pretrained(str(tools_folder))
    rendered = [
        messages[0],
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": json.loads(arguments)},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny", "name": "get_weather"},
    ]
    prompt = tok.apply_chat_template(
        rendered, tools=TOOLS, tokenize=False, add_generation_prompt=True
    )
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "paris"' in prompt
    assert "<tool_response>\nsunny" in prompt
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == len(tok(prompt, add_special_tokens=False)["input_ids"])


def test_an_unconstrained_request_beside_constrained_ones_is_unaffected(
    llm_server: LiveServer, tools_deployed: str
) -> None:
    free = {"model": "tiny-tools", "messages": ASK, "max_tokens": 12, "temperature": 0}
    fmt = {"type": "json_schema", "json_schema": {"name": "w", "schema": WEATHER}}
    headers = {"Authorization": f"Bearer {llm_server.admin_key}"}

    async def run() -> tuple[str, list[str]]:
        async with httpx.AsyncClient(base_url=llm_server.url, headers=headers, timeout=60) as c:
            alone = (await c.post("/v1/chat/completions", json=free)).json()
            together = await asyncio.gather(
                c.post("/v1/chat/completions", json={**free, "response_format": fmt}),
                c.post("/v1/chat/completions", json=free),
                c.post(
                    "/v1/chat/completions",
                    json={**free, "tools": TOOLS, "n": 2, "tool_choice": "required"},
                ),
                c.post("/v1/chat/completions", json=free),
            )
        texts = [r.json()["choices"][0]["message"]["content"] for r in together[1::2]]
        return alone["choices"][0]["message"]["content"], texts

    alone, beside = asyncio.run(run())
    assert beside == [alone, alone]


def test_bad_schemas_and_tool_choices_are_refused_by_name(
    llm_server: LiveServer, tools_deployed: str, tiny_deployed: str
) -> None:
    headers = {"Authorization": f"Bearer {llm_server.admin_key}"}
    base = {"model": "tiny-tools", "messages": ASK, "max_tokens": 4}
    bad_tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "nope"}},
                }
            },
            "response_format",
        ),
        ({"tools": [bad_tool], "tool_choice": "required"}, "tools[0].function.parameters"),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "g"}}},
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools"),
        ({"model": "tiny", "tools": TOOLS}, "tools"),  # its template does not render tools
    ]
    with httpx.Client(base_url=llm_server.url, headers=headers, timeout=60) as c:
        for extra, param in cases:
            reply = c.post("/v1/chat/completions", json={**base, **extra})
            assert reply.status_code == 400, (extra, reply.text)
            error = reply.json()["error"]
            assert error["type"] == "invalid_request_error"
            assert str(error["param"]).startswith(param), (extra, error)


def test_constrained_and_free_sequences_share_decoding_steps(tools_folder: Path) -> None:
    """In the engine itself: admitted together, decoded in the same steps, the free sequence
    gives the tokens it gives alone and the constrained one valid JSON."""
    from modelyard.llm.language_model import load_causal_lm

    model, tokenizer = load_causal_lm(tools_folder, "cpu")
    lm = LanguageModel(model, tokenizer, EngineConfig(context_length=512, name="mixed"))
    prompt = lm.chat_prompt(ASK)
    constraint = lm.grammars.compile(json_schema_grammar(WEATHER), "response_format")

    async def run() -> tuple[list[str], str]:
        free = [lm.generate(prompt, lm.sampling(max_tokens=10, temperature=0)) for _ in range(2)]
        fixed = lm.generate(
            prompt, lm.sampling(max_tokens=60, temperature=0, constraint=constraint)
        )
        lm.engine.start()  # all three are admitted in one prefill
        texts = await asyncio.gather(*(s.text() for s in [*free, fixed]))
        alone = await lm.generate(prompt, lm.sampling(max_tokens=10, temperature=0)).text()
        return [texts[0], texts[1], alone], texts[2]

    try:
        free_texts, constrained = asyncio.run(run())
        assert lm.engine.max_batch_seen == 3
    finally:
        lm.close()
    assert free_texts[0] == free_texts[1] == free_texts[2]
    jsonschema.validate(json.loads(constrained), WEATHER)
