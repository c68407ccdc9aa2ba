"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from modelyard import __version__
from modelyard.api import problems
from modelyard.api.metrics import HttpMetrics, MetricsMiddleware
from modelyard.api.routes import (
    auth,
    datasets,
    deployments,
    executor,
    health,
    inference,
    jobs,
    models,
)
from modelyard.api.routes import openai as openai_routes
from modelyard.platform import Platform

DESCRIPTION = """
Modelyard is a self-hosted Model-as-a-Service platform: upload data sets, train and register
models, and serve them. Every route except the health probes, `/metrics` and these docs needs
an API key: `Authorization: Bearer my_...`. Errors are RFC 9457 problem+json documents.
"""

OPEN_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/v2/health/live",
        "/v2/health/ready",
    }
)


def create_app(platform: Platform, *, own_platform: bool = False) -> FastAPI:
    """Build the HTTP app around an existing :class:`Platform`.

    With ``own_platform`` the app starts the platform's background work when it starts and
    closes the platform when it shuts down.
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if own_platform:
            platform.start()
            await platform.serving.start()
        try:
            yield
        finally:
            if own_platform:
                await platform.serving.stop()
                platform.close()

    app = FastAPI(
        title="Modelyard",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.platform = platform
    app.state.metrics = HttpMetrics(platform.metrics_registry)
    problems.install(app)
    # The inference routes come first: routes are matched in order, and they are the hot path.
    for module in (inference, health, auth, datasets, models, jobs, executor, deployments):
        app.include_router(module.router)
    app.include_router(inference.health_router)
    openai_routes.install(app)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
