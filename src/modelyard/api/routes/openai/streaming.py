"""Running several generations for one request, and Server-Sent Events in OpenAI's format."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import ModelyardError
from modelyard.llm import Delta, GenerationStream, LanguageModel, SamplingParams, TokenLogprob
from modelyard.usage.service import Ticket

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


def start_all(
    lm: LanguageModel,
    jobs: Sequence[tuple[list[int], SamplingParams]],
    deadline: float | None,
    *,
    incremental: bool,
) -> list[GenerationStream]:
    """Submit every (prompt, params); if one is refused, abort the ones already queued.
    ``incremental=False`` (a request that is not streamed) has each output delivered once."""
    streams: list[GenerationStream] = []
    try:
        for prompt_ids, params in jobs:
            streams.append(
                lm.generate(prompt_ids, params, deadline=deadline, incremental=incremental)
            )
    except BaseException:
        for stream in streams:
            stream.abort()
        raise
    return streams


def seeded(seed: int | None, index: int) -> int | None:
    """Choice ``index``'s seed: different choices differ, the same request repeats."""
    return None if seed is None else seed + index


async def merged(streams: Sequence[GenerationStream]) -> AsyncIterator[tuple[int, Delta]]:
    """Deltas of all streams as they come, tagged with the stream's index."""
    if len(streams) == 1:
        # The common case reads its one stream directly: no task and queue hop per token.
        try:
            async for delta in streams[0]:
                yield 0, delta
        finally:
            streams[0].abort()
        return
    queue: asyncio.Queue[tuple[int, Delta | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: GenerationStream) -> None:
        try:
            async for delta in stream:
                await queue.put((index, delta))
        except BaseException as exc:
            await queue.put((index, exc))
            return
        await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    done = 0
    try:
        while done < len(streams):
            index, item = await queue.get()
            if item is None:
                done += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for stream in streams:
            stream.abort()
        for task in tasks:
            task.cancel()


@dataclass
class Generated:
    """One stream's whole output: its text and its tokens' log-probabilities (if asked)."""

    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)


async def collect(streams: Sequence[GenerationStream]) -> list[Generated]:
    """The whole output of each stream (aborting the rest if one fails)."""
    out = [Generated() for _ in streams]
    async for index, delta in merged(streams):
        out[index].text += delta.text
        out[index].logprobs.extend(delta.logprobs)
    return out


# OpenAI's stand-in for a log-probability too small to show (JSON has no -Infinity).
_FLOOR = -9999.0


def _logprob(value: float) -> float:
    return value if value > _FLOOR else _FLOOR


def chat_logprobs(lm: LanguageModel, items: Sequence[TokenLogprob]) -> dict[str, Any]:
    """A chat choice's ``logprobs``: ``{"content": [{token, logprob, bytes, top_logprobs}]}``."""

    def entry(token_id: int, value: float) -> dict[str, Any]:
        text = lm.token_text(token_id)
        return {"token": text, "logprob": _logprob(value), "bytes": list(text.encode())}

    content = [
        {**entry(item.token_id, item.logprob), "top_logprobs": [entry(t, v) for t, v in item.top]}
        for item in items
    ]
    return {"content": content, "refusal": None}


def completion_logprobs(
    lm: LanguageModel, items: Sequence[TokenLogprob], offset: int = 0
) -> dict[str, Any]:
    """A completion choice's ``logprobs`` in the legacy shape: ``tokens``,
    ``token_logprobs``, ``top_logprobs`` (one ``{token: logprob}`` per position) and
    ``text_offset`` (each token's start in the choice's text, from ``offset``)."""
    tokens = [lm.token_text(item.token_id) for item in items]
    offsets = []
    for text in tokens:
        offsets.append(offset)
        offset += len(text)
    return {
        "tokens": tokens,
        "token_logprobs": [_logprob(item.logprob) for item in items],
        "top_logprobs": [{lm.token_text(t): _logprob(v) for t, v in item.top} for item in items],
        "text_offset": offsets,
    }


def usage(prompt_tokens: int, streams: Sequence[GenerationStream]) -> dict[str, int]:
    completion = sum(stream.completion_tokens for stream in streams)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


async def event_stream(
    streams: Sequence[GenerationStream],
    opening: Callable[[int], dict[str, Any] | None],
    chunk: Callable[[int, Delta], dict[str, Any] | None],
    final_usage: Callable[[], dict[str, Any] | None],
) -> AsyncIterator[bytes]:
    """SSE bytes: an optional opening chunk per choice, a chunk per delta that has something to
    say (``chunk`` answers None for the others), the usage chunk
    if asked for, then ``data: [DONE]``. Leaving early (the client went away) aborts every
    generation, which frees their slots in the engine before its next step."""
    try:
        for index in range(len(streams)):
            first = opening(index)
            if first is not None:
                yield sse(first)
        async for index, delta in merged(streams):
            body = chunk(index, delta)
            if body is not None:  # nothing to say yet (text held back)
                yield sse(body)
        last = final_usage()
        if last is not None:
            yield sse(last)
    except ModelyardError as exc:
        error = {"message": exc.detail, "type": "server_error", "param": None, "code": None}
        yield sse({"error": error})
    finally:
        for stream in streams:
            stream.abort()
    yield sse("[DONE]")


async def metered(
    events: AsyncIterator[bytes],
    ticket: Ticket,
    prompt_tokens: int,
    streams: Sequence[GenerationStream],
    version: int | None,
    model: str | None,
) -> AsyncIterator[bytes]:
    """``events`` as they come; once they end (or the client goes away), the request is
    metered with the tokens it really used and its token charge corrected."""
    status = "ok"
    try:
        async for chunk in events:
            yield chunk
    except BaseException:
        status = "aborted"
        raise
    finally:
        ticket.done(
            version=version,
            model=model,
            rows=len(streams),
            input_tokens=prompt_tokens,
            output_tokens=sum(stream.completion_tokens for stream in streams),
            status=status,
        )


async def run_metered(
    ticket: Ticket,
    streams: Sequence[GenerationStream],
    prompt_tokens: int,
    version: int | None,
    model: str | None,
) -> list[Generated]:
    """:func:`collect`, metered: the request's tokens counted, its token charge corrected."""
    try:
        outputs = await collect(streams)
    except ModelyardError as exc:
        ticket.failed(exc.status, version=version)
        raise
    ticket.done(
        version=version,
        model=model,
        rows=len(streams),
        input_tokens=prompt_tokens,
        output_tokens=sum(stream.completion_tokens for stream in streams),
    )
    return outputs
