"""POST /v1/chat/completions (plain and streamed)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse

from modelyard.api.deps import CallerDep, PlatformDep
from modelyard.api.routes.openai.protocol import ChatCompletionRequest
from modelyard.api.routes.openai.streaming import (
    SSE_HEADERS,
    chat_logprobs,
    collect,
    event_stream,
    new_id,
    now,
    seeded,
    start_all,
    usage,
)
from modelyard.api.routes.openai.target import runtime_of, served_model, wait_budget
from modelyard.errors import InvalidInput
from modelyard.llm import Delta, LanguageModel, NoChatTemplate

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])


@router.post("/chat/completions", summary="Create a chat completion (OpenAI-compatible)")
async def create_chat_completion(
    body: ChatCompletionRequest, platform: PlatformDep, caller: CallerDep
) -> Response:
    served = await served_model(platform, caller, body.model)
    lm: LanguageModel = runtime_of(served, body.model, "causal_lm", "/v1/chat/completions")
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    try:
        prompt_ids = lm.chat_prompt(messages)
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
        )
        for i in range(body.n)
    ]
    wants_logprobs = body.logprobs_wanted() is not None
    deadline = time.monotonic() + wait_budget(platform, body.model)
    streams = start_all(lm, [(prompt_ids, p) for p in params], deadline)
    completion_id, created = new_id("chatcmpl"), now()
    base: dict[str, Any] = {
        "id": completion_id,
        "created": created,
        "model": body.model,
        "system_fingerprint": None,
    }
    if not body.stream:
        outputs = await collect(streams)
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": out.text, "refusal": None},
                "finish_reason": stream.finish_reason,
                "logprobs": chat_logprobs(lm, out.logprobs) if wants_logprobs else None,
            }
            for i, (out, stream) in enumerate(zip(outputs, streams, strict=True))
        ]
        return JSONResponse(
            {
                **base,
                "object": "chat.completion",
                "choices": choices,
                "usage": usage(len(prompt_ids), streams),
            }
        )

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    extra: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {**base, "object": "chat.completion.chunk", "choices": choices, **extra}

    def opening(index: int) -> dict[str, Any]:
        delta = {"role": "assistant", "content": ""}
        return chunk([{"index": index, "delta": delta, "finish_reason": None, "logprobs": None}])

    def step(index: int, item: Delta) -> dict[str, Any]:
        delta = {"content": item.text} if item.text or item.finish_reason is None else {}
        choice = {
            "index": index,
            "delta": delta,
            "finish_reason": item.finish_reason,
            "logprobs": chat_logprobs(lm, item.logprobs) if wants_logprobs else None,
        }
        return chunk([choice])

    def final() -> dict[str, Any] | None:
        if not include_usage:
            return None
        return {**chunk([]), "usage": usage(len(prompt_ids), streams)}

    return StreamingResponse(
        event_stream(streams, opening, step, final),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )
