"""The web dashboard at ``/ui``: server-rendered pages over the same services as the API.

Sign in with an API key (exchanged for a session cookie, see :mod:`modelyard.ui.sessions`);
every page calls the services, or the API's own route functions, with the signed-in caller,
so it shows exactly what the key may see. Templates are Jinja2 (autoescaped); htmx and uPlot
are served from the package (``static/``), with no CDN and no build step.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from modelyard.platform import Platform
from modelyard.ui.load import LoadTracker
from modelyard.ui.render import Renderer
from modelyard.ui.routes import (
    auth,
    datasets,
    deployments,
    jobs,
    keys,
    models,
    overview,
    usage,
)
from modelyard.ui.sessions import Sessions, ui_secret


def install_ui(app: FastAPI, platform: Platform) -> tuple[Sessions, list[APIRouter]]:
    """Serve the dashboard from ``app``; returns the sessions the gate admits it by and the
    routers it added."""
    settings = platform.settings
    renderer: Renderer
    sessions = Sessions(
        ui_secret(settings),
        platform.auth,
        settings.ui_session_ttl_s,
        error_page=lambda request, exc: renderer.error(request, exc),
    )
    renderer = Renderer(sessions, settings.private_roots())
    app.state.ui_sessions = sessions
    app.state.ui_renderer = renderer
    app.state.ui_load = LoadTracker(platform.serving.metrics)
    routers = [m.router for m in (auth, overview, datasets, models, jobs, deployments, keys, usage)]
    for router in routers:
        app.include_router(router)
    return sessions, routers


__all__ = ["install_ui"]
