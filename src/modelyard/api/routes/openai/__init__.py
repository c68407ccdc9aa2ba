"""OpenAI-compatible endpoints under ``/v1``: models, chat completions, completions,
embeddings, files and fine-tuning jobs.

Model ids are deployment names (a fine-tuned model's ``ft:base:suffix:id`` is served by the
deployment ``ft-base-suffix-id``). Every route takes the server's API keys as Bearer tokens
and answers errors as ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from modelyard.api.routes.openai import chat, completions, embeddings, errors, models


def routers() -> list[APIRouter]:
    """Every router of the OpenAI-compatible API."""
    found = [models.router, chat.router, completions.router, embeddings.router]
    from modelyard.api.routes.openai import files, fine_tuning

    found += [files.router, fine_tuning.router]
    return found


def install(app: FastAPI) -> None:
    """Mount the routers and answer errors on ``/v1/`` in OpenAI's shape."""
    for router in routers():
        app.include_router(router)
    errors.install(app)


__all__ = ["install", "routers"]
