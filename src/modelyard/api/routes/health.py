"""Liveness, readiness and Prometheus metrics: open to everyone (metrics: see below)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Metric, generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import text

from modelyard import __version__
from modelyard.api.deps import PlatformDep
from modelyard.api.gate import CALLER_KEY
from modelyard.auth.access import Caller, Scope
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


class _Visible(Collector):
    """A registry's metrics with only the series of the deployments in ``names``."""

    def __init__(self, registry: CollectorRegistry, names: set[str] | None) -> None:
        self.registry = registry
        self.names = names

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            if self.names is not None:
                family.samples = [
                    s
                    for s in family.samples
                    if "deployment" not in s.labels or s.labels["deployment"] in self.names
                ]
            yield family


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    description=(
        "Series of every deployment for a key with the 'metrics' scope; otherwise only of the "
        "deployments the caller may read (without a key: the public ones). With "
        "MODELYARD_METRICS_REQUIRE_KEY a key with the 'metrics' scope is required."
    ),
)
def metrics(request: Request, platform: PlatformDep) -> Response:
    caller: Caller | None = request.scope.get(CALLER_KEY)
    names = None
    if caller is None or not caller.has(Scope.METRICS):
        names = platform.deployments.visible_names(caller)
    registry = _Visible(platform.metrics_view(), names)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
