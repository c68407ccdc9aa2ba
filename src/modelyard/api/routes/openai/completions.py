"""POST /v1/completions (plain and streamed)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse

from modelyard.api.deps import CallerDep, PlatformDep
from modelyard.api.routes.openai.protocol import CompletionRequest
from modelyard.api.routes.openai.streaming import (
    SSE_HEADERS,
    completion_logprobs,
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
from modelyard.llm import Delta, LanguageModel, SamplingParams

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
MAX_PROMPTS = 64


@router.post("/completions", summary="Create a text completion (OpenAI-compatible)")
async def create_completion(
    body: CompletionRequest, platform: PlatformDep, caller: CallerDep
) -> Response:
    served = await served_model(platform, caller, body.model)
    lm: LanguageModel = runtime_of(served, body.model, "causal_lm", "/v1/completions")
    prompts = body.prompts()
    if not prompts or len(prompts) > MAX_PROMPTS:
        raise InvalidInput(f"prompt: give 1 to {MAX_PROMPTS} prompts", param="prompt")
    encoded: list[list[int]] = []
    for prompt in prompts:
        ids = lm.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise InvalidInput("prompt: a prompt is empty", param="prompt")
        vocab = len(lm.tokenizer)
        if any(not 0 <= t < vocab for t in ids):
            raise InvalidInput(f"prompt: token ids must be in [0, {vocab})", param="prompt")
        encoded.append(ids)
    logit_bias = lm.check_logit_bias(body.logit_bias)
    jobs: list[tuple[list[int], SamplingParams]] = []
    for ids in encoded:
        max_tokens = lm.check_room(len(ids), body.max_tokens, "max_tokens")
        for j in range(body.n):
            params = lm.sampling(
                max_tokens=max_tokens,
                temperature=body.temperature,
                top_p=body.top_p,
                stop=body.stop_list(),
                seed=seeded(body.seed, j),
                logprobs=body.logprobs,
                presence_penalty=body.presence_penalty,
                frequency_penalty=body.frequency_penalty,
                logit_bias=logit_bias,
            )
            jobs.append((ids, params))
    wants_logprobs = body.logprobs is not None
    deadline = time.monotonic() + wait_budget(platform, body.model)
    prompt_tokens = sum(len(ids) for ids in encoded)
    name = deployment_name(body.model)
    reserved = sum(len(ids) + params.max_tokens for ids, params in jobs)
    ticket = await platform.usage.admit(caller, name, "completion", tokens=reserved)
    try:
        streams = start_all(lm, jobs, deadline, incremental=body.stream)
    except ModelyardError as exc:
        ticket.failed(exc.status, version=served.number)
        raise
    echoes = [lm.tokenizer.decode(ids) if body.echo else "" for ids in encoded]
    base: dict[str, Any] = {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": now(),
        "model": body.model,
        "system_fingerprint": None,
    }
    if not body.stream:
        outputs = await run_metered(
            ticket, streams, prompt_tokens, served.number, model_of(platform, name)
        )
        choices = [
            {
                "index": i,
                "text": echoes[i // body.n] + out.text,
                "finish_reason": stream.finish_reason,
                "logprobs": completion_logprobs(lm, out.logprobs) if wants_logprobs else None,
            }
            for i, (out, stream) in enumerate(zip(outputs, streams, strict=True))
        ]
        return JSONResponse(
            {**base, "choices": choices, "usage": usage(prompt_tokens, streams)},
            headers=ticket.headers,
        )

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    extra: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {**base, "choices": choices, **extra}

    def opening(index: int) -> dict[str, Any] | None:
        echo = echoes[index // body.n]
        if not echo:
            return None
        return chunk([{"index": index, "text": echo, "finish_reason": None, "logprobs": None}])

    sent = [0] * len(streams)

    def step(index: int, item: Delta) -> dict[str, Any]:
        logprobs = None
        if wants_logprobs:
            logprobs = completion_logprobs(lm, item.logprobs, sent[index])
            sent[index] += sum(len(text) for text in logprobs["tokens"])
        choice = {
            "index": index,
            "text": item.text,
            "finish_reason": item.finish_reason,
            "logprobs": logprobs,
        }
        return chunk([choice])

    def final() -> dict[str, Any] | None:
        if not include_usage:
            return None
        return {**chunk([]), "usage": usage(prompt_tokens, streams)}

    events = event_stream(streams, opening, step, final)
    return StreamingResponse(
        metered(events, ticket, prompt_tokens, streams, served.number, model_of(platform, name)),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **ticket.headers},
    )
