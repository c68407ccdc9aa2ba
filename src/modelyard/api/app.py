"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from fastapi import FastAPI, Request, Response

from modelyard import __version__
from modelyard.api import gate, problems
from modelyard.api.docs import install_docs
from modelyard.api.metrics import HttpMetrics, MetricsMiddleware
from modelyard.api.routes import (
    auth,
    datasets,
    deployments,
    executor,
    explain,
    health,
    inference,
    jobs,
    models,
    projects,
    train_model,
)
from modelyard.api.routes import limits as limit_routes
from modelyard.api.routes import openai as openai_routes
from modelyard.api.routes import usage as usage_routes
from modelyard.api.routes.openai import errors as openai_errors
from modelyard.errors import ModelyardError, without_paths
from modelyard.platform import Platform
from modelyard.ui import install_ui

DESCRIPTION = """
Modelyard is a self-hosted Model-as-a-Service platform: upload data sets, train and register
models, and serve them. Every route except the health probes, `/metrics` and these docs needs
an API key: `Authorization: Bearer my_...`. Errors are RFC 9457 problem+json documents.
"""


def _without_paths(handler: gate.ErrorHandler, roots: tuple[str, ...]) -> gate.ErrorHandler:
    """``handler`` answering with a detail that names no file of the server's own."""

    async def handle(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ModelyardError):
            exc.detail = without_paths(exc.detail, roots)
        return await handler(request, exc)

    return handle


def create_app(
    platform: Platform, *, own_platform: bool = False, runs_jobs: bool = True
) -> FastAPI:
    """Build the HTTP app around an existing :class:`Platform`.

    With ``own_platform`` the app starts the platform's background work when it starts and
    closes the platform when it shuts down; without ``runs_jobs`` that work runs no job and no
    storage collection (another process of the same server does).
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if own_platform:
            platform.start(jobs=runs_jobs)
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
        # Served from the package instead (api/docs.py): FastAPI's pages load from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app, app.title)
    app.state.platform = platform
    app.state.metrics = HttpMetrics(platform.metrics_registry)
    problems.install(app)
    # The inference routes come first: routes are matched in order, and they are the hot path.
    routers = [
        module.router
        for module in (
            inference,
            health,
            auth,
            projects,
            datasets,
            models,
            jobs,
            train_model,
            executor,
            deployments,
            limit_routes,
            usage_routes,
        )
    ]
    # KServe's v1 explain route before the OpenAI routes, which share the /v1/models prefix.
    routers += [explain.router, explain.kserve_router]
    routers += [inference.health_router, *openai_routes.routers()]
    for router in routers:
        app.include_router(router)
    openai_errors.install(app)
    app.add_exception_handler(
        ModelyardError,
        _without_paths(
            cast("gate.ErrorHandler", app.exception_handlers[ModelyardError]),
            platform.settings.private_roots(),
        ),
    )
    sessions, ui_routers = install_ui(app, platform) if platform.settings.ui else (None, [])
    routers += ui_routers
    routes = gate.entries([*app.router.routes, *(r for router in routers for r in router.routes)])
    missing = gate.missing_rules(routes)
    if missing:
        raise RuntimeError(f"routes without an access rule in api/policy.py: {missing}")
    app.add_middleware(
        gate.Gate,
        platform=platform,
        routes=routes,
        on_error=cast("gate.ErrorHandler", app.exception_handlers[ModelyardError]),
        sessions=sessions,
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
