"""The overview: running jobs, deployments and their load, recent jobs."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from modelyard.ui.routes.deployments import loads_of
from modelyard.ui.routing import UiDep, UiRoute
from modelyard.ui.sessions import PATH

router = APIRouter(prefix=PATH, route_class=UiRoute, include_in_schema=False)

SHOWN = 10


@router.get("")
def overview(ui: UiDep) -> Response:
    jobs = ui.platform.jobs
    running, running_total = jobs.list_jobs(ui.caller, "running", SHOWN, 0)
    _queued, queued_total = jobs.list_jobs(ui.caller, "queued", 1, 0)
    recent, _ = jobs.list_jobs(ui.caller, None, SHOWN, 0)
    served, deployments_total = ui.platform.deployment_facade.list(ui.caller, SHOWN, 0)
    deployments = [(row, live, loads_of(ui, row.name)) for row, live in served]
    return ui.page(
        "overview.html",
        running=running,
        running_total=running_total,
        queued_total=queued_total,
        recent=recent,
        deployments=deployments,
        deployments_total=deployments_total,
    )
