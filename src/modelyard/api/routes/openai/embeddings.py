"""POST /v1/embeddings: batched with other requests by the deployment's dynamic batcher; a
lean route (:mod:`modelyard.api.lean`)."""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Response

from modelyard.api.deps import CallerDep, PlatformDep
from modelyard.api.lean import json_response, lean_post
from modelyard.api.routes.openai.protocol import EmbeddingRequest
from modelyard.api.routes.openai.target import (
    deployment_name,
    model_of,
    runtime_of,
    served_model,
    wait_budget,
)
from modelyard.errors import InvalidInput, ModelyardError

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
MAX_INPUTS = 2048


def _texts(body: EmbeddingRequest, tokenizer: Any) -> list[str]:
    raw = body.input
    if isinstance(raw, str):
        items: list[Any] = [raw]
    elif raw and all(isinstance(x, int) for x in raw):
        items = [raw]
    else:
        items = list(raw)
    if not items or len(items) > MAX_INPUTS:
        raise InvalidInput(f"input: give 1 to {MAX_INPUTS} inputs", param="input")
    texts = []
    for item in items:
        text = item if isinstance(item, str) else tokenizer.decode(list(item))
        if not text:
            raise InvalidInput("input: an input is empty", param="input")
        texts.append(text)
    return texts


@lean_post(
    router,
    "/embeddings",
    response_model=dict[str, Any],
    summary="Create embeddings (OpenAI-compatible)",
)
async def create_embeddings(
    body: EmbeddingRequest, platform: PlatformDep, caller: CallerDep
) -> Response:
    served = await served_model(platform, caller, body.model)
    embedder = runtime_of(served, body.model, "embedding", "/v1/embeddings")
    texts = _texts(body, embedder.tokenizer)
    if body.dimensions is not None and body.dimensions != embedder.dimension:
        raise InvalidInput(
            f"'{body.model}' makes {embedder.dimension}-dimensional embeddings and does not "
            "support other dimensions",
            param="dimensions",
        )
    deadline = time.monotonic() + wait_budget(platform, body.model)
    name = deployment_name(body.model)
    ticket = await platform.usage.admit(caller, name, "embedding")
    try:
        result = await platform.serving.infer(
            name,
            {"text": np.array(texts, dtype=object)},
            version=str(served.number),
            deadline=deadline,
        )
    except ModelyardError as exc:
        ticket.failed(exc.status, version=served.number)
        raise
    vectors = np.asarray(result.outputs["embedding"], dtype=np.float32)
    tokens = int(np.asarray(result.outputs["tokens"]).sum())
    # Embedding tokens are known only once counted: charged to token limits afterwards.
    ticket.done(
        version=served.number,
        model=model_of(platform, name),
        rows=len(texts),
        input_tokens=tokens,
    )
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(row, body.encoding_format)}
        for i, row in enumerate(vectors)
    ]
    response = json_response(
        {
            "object": "list",
            "data": data,
            "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
    if ticket.headers:
        response.headers.update(ticket.headers)
    return response


def _encode(row: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
    values: list[float] = row.tolist()
    return values
