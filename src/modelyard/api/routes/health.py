"""Liveness, readiness and Prometheus metrics: open to everyone."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from modelyard import __version__
from modelyard.api.deps import PlatformDep
from modelyard.errors import Unavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/readyz", summary="The server can reach its metadata store")
def readyz(platform: PlatformDep) -> dict[str, str | bool]:
    try:
        with platform.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise Unavailable(f"metadata store unreachable: {type(exc).__name__}") from exc
    # "warm": the ML libraries are loaded, so the first job submission is as fast as the rest.
    return {"status": "ready", "warm": platform.warm.is_set()}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
