"""POST /v1/chat/completions (plain and streamed), with tool calls and structured outputs."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse

from modelyard.api.deps import CallerDep, PlatformDep
from modelyard.api.routes.openai.protocol import (
    ChatCompletionRequest,
    ChatMessage,
    JsonObjectFormat,
    JsonSchemaFormat,
    NamedToolChoice,
)
from modelyard.api.routes.openai.streaming import (
    SSE_HEADERS,
    chat_logprobs,
    event_stream,
    metered,
    new_id,
    now,
    run_metered,
    seeded,
    start_all,
    usage,
)
from modelyard.api.routes.openai.target import (
    deployment_name,
    model_of,
    runtime_of,
    served_model,
    wait_budget,
)
from modelyard.errors import InvalidInput, ModelyardError
from modelyard.llm import Delta, LanguageModel, NoChatTemplate
from modelyard.llm.grammar import Constraint, json_schema_grammar
from modelyard.llm.tools import (
    Arguments,
    CallStart,
    Content,
    Event,
    ToolCallReader,
    call_schema,
    read_tool_calls,
    tool_call_grammar,
)

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])


@router.post("/chat/completions", summary="Create a chat completion (OpenAI-compatible)")
async def create_chat_completion(
    body: ChatCompletionRequest, platform: PlatformDep, caller: CallerDep
) -> Response:
    served = await served_model(platform, caller, body.model)
    lm: LanguageModel = runtime_of(served, body.model, "causal_lm", "/v1/chat/completions")
    mode = body.tool_mode()
    if mode != "none" and not lm.supports_tools:
        raise InvalidInput(
            f"tools: the chat template of '{body.model}' does not render tools in a format "
            "this server reads (<tool_call> blocks)",
            param="tools",
        )
    tools = [tool.model_dump(exclude_none=True) for tool in body.tools or []]
    try:
        prompt_ids = lm.chat_prompt(chat_messages(body.messages), tools if mode != "none" else None)
    except NoChatTemplate as exc:
        raise InvalidInput(
            f"'{body.model}' has no chat template, so it is not a chat model; use /v1/completions",
            param="model",
            code="model_not_supported",
        ) from exc
    except InvalidInput as exc:
        raise InvalidInput(exc.detail, param="messages") from exc
    max_tokens = lm.check_room(len(prompt_ids), body.limit(), body.limit_param())
    logit_bias = lm.check_logit_bias(body.logit_bias)
    constraint = await asyncio.to_thread(constraint_of, lm, body, mode)
    params = [
        lm.sampling(
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stop_list(),
            seed=seeded(body.seed, i),
            logprobs=body.logprobs_wanted(),
            presence_penalty=body.presence_penalty,
            frequency_penalty=body.frequency_penalty,
            logit_bias=logit_bias,
            constraint=constraint,
        )
        for i in range(body.n)
    ]
    one_call = body.parallel_tool_calls is False
    wants_logprobs = body.logprobs_wanted() is not None
    deadline = time.monotonic() + wait_budget(platform, body.model)
    name = deployment_name(body.model)
    ticket = await platform.usage.admit(
        caller, name, "chat", tokens=len(prompt_ids) + max_tokens * body.n
    )
    try:
        streams = start_all(
            lm, [(prompt_ids, p) for p in params], deadline, incremental=body.stream
        )
    except ModelyardError as exc:
        ticket.failed(exc.status, version=served.number)
        raise
    completion_id, created = new_id("chatcmpl"), now()
    base: dict[str, Any] = {
        "id": completion_id,
        "created": created,
        "model": body.model,
        "system_fingerprint": None,
    }
    if not body.stream:
        outputs = await run_metered(
            ticket, streams, len(prompt_ids), served.number, model_of(platform, name)
        )
        choices = []
        for i, (out, stream) in enumerate(zip(outputs, streams, strict=True)):
            message: dict[str, Any] = {"role": "assistant", "content": out.text, "refusal": None}
            finish = stream.finish_reason
            if mode != "none":
                content, calls = read_tool_calls(out.text)
                if calls:
                    calls = calls[:1] if one_call else calls
                    message["content"] = content
                    message["tool_calls"] = [call.as_openai() for call in calls]
                    finish = "tool_calls" if finish == "stop" else finish
            choices.append(
                {
                    "index": i,
                    "message": message,
                    "finish_reason": finish,
                    "logprobs": chat_logprobs(lm, out.logprobs) if wants_logprobs else None,
                }
            )
        return JSONResponse(
            {
                **base,
                "object": "chat.completion",
                "choices": choices,
                "usage": usage(len(prompt_ids), streams),
            },
            headers=ticket.headers,
        )

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    extra: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {**base, "object": "chat.completion.chunk", "choices": choices, **extra}

    def opening(index: int) -> dict[str, Any]:
        delta = {"role": "assistant", "content": ""}
        return chunk([{"index": index, "delta": delta, "finish_reason": None, "logprobs": None}])

    readers = [ToolCallReader() for _ in streams] if mode != "none" else []

    def step(index: int, item: Delta) -> dict[str, Any] | None:
        finish = item.finish_reason
        if readers:
            reader = readers[index]
            events = reader.push(item.text) + (reader.finish() if finish else [])
            delta = tool_delta(events, 1 if one_call else None)
            if finish == "stop" and reader.calls:
                finish = "tool_calls"
            if not delta and finish is None and not item.logprobs:
                return None
        else:
            delta = {"content": item.text} if item.text or finish is None else {}
        choice = {
            "index": index,
            "delta": delta,
            "finish_reason": finish,
            "logprobs": chat_logprobs(lm, item.logprobs) if wants_logprobs else None,
        }
        return chunk([choice])

    def final() -> dict[str, Any] | None:
        if not include_usage:
            return None
        return {**chunk([]), "usage": usage(len(prompt_ids), streams)}

    events = event_stream(streams, opening, step, final)
    return StreamingResponse(
        metered(events, ticket, len(prompt_ids), streams, served.number, model_of(platform, name)),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **ticket.headers},
    )


def _arguments(text: str) -> Any:
    """A call's arguments for the chat template: the object (templates write it with
    ``tojson``), or the text as given when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def chat_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages as chat templates take them: calls of assistant turns with their arguments
    as objects, tool turns with the id and the name of the call they answer."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for m in messages:
        message: dict[str, Any] = {"role": m.role, "content": m.text()}
        if m.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": _arguments(call.function.arguments),
                    },
                }
                for call in m.tool_calls
            ]
            names.update((call.id, call.function.name) for call in m.tool_calls)
        if m.role == "tool":
            message["tool_call_id"] = m.tool_call_id
            name = m.name or names.get(m.tool_call_id or "")
            if name:
                message["name"] = name
        out.append(message)
    return out


def constraint_of(lm: LanguageModel, body: ChatCompletionRequest, mode: str) -> Constraint | None:
    """The grammar the answer must follow, compiled; None when it is free text.

    ``required`` and a named function force ``<tool_call>`` blocks whose arguments fit the
    functions' parameters; ``response_format`` json_object / json_schema force that JSON (with
    ``auto`` tools, calls are allowed instead of it). InvalidInput names the schema at fault.
    """
    fmt = body.response_format
    content: dict[str, Any] | None = None
    if isinstance(fmt, JsonObjectFormat):
        content = {"type": "object"}
    elif isinstance(fmt, JsonSchemaFormat):
        content = fmt.json_schema.json_schema
    forced = mode in ("required", "named")
    if content is not None and not forced:
        lm.grammars.check(json_schema_grammar(content), "response_format.json_schema.schema")
    if not forced and (content is None or mode == "none"):
        if content is None:
            return None
        return lm.grammars.compile(json_schema_grammar(content), "response_format")
    functions = []
    choice = body.tool_choice
    named = choice.function.name if isinstance(choice, NamedToolChoice) else None
    for i, tool in enumerate(body.tools or []):
        fn = tool.function
        if named is not None and fn.name != named:
            continue
        param = f"tools[{i}].function.parameters"
        if forced:
            lm.grammars.check(json_schema_grammar(call_schema(fn.name, fn.parameters)), param)
        functions.append((fn.name, fn.parameters))
    parallel = mode == "required" and body.parallel_tool_calls is not False
    grammar = tool_call_grammar(
        lm.grammars, functions, parallel=parallel, content_schema=None if forced else content
    )
    return lm.grammars.compile(grammar, "tools")


def tool_delta(events: list[Event], most: int | None) -> dict[str, Any]:
    """One chunk's ``delta`` from what the reader found: content text and ``tool_calls``
    entries (index, then id, type and name on a call's first entry, argument fragments)."""
    delta: dict[str, Any] = {}
    calls: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, Content):
            delta["content"] = delta.get("content", "") + event.text
            continue
        if most is not None and event.index >= most:
            continue
        if isinstance(event, CallStart):
            calls.append(
                {
                    "index": event.index,
                    "id": event.call.id,
                    "type": "function",
                    "function": {"name": event.call.name, "arguments": ""},
                }
            )
        elif isinstance(event, Arguments):
            if calls and calls[-1]["index"] == event.index:
                calls[-1]["function"]["arguments"] += event.text
            else:
                calls.append({"index": event.index, "function": {"arguments": event.text}})
    if calls:
        delta["tool_calls"] = calls
    return delta
