"""Jobs: the list (status filter, pages), a job with its live curves and events, cancel."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelyard.api.routes.jobs import _stream
from modelyard.api.schemas.jobs import MAX_EVENT_SEQ
from modelyard.jobs.state import TERMINAL
from modelyard.ui.render import pager
from modelyard.ui.routing import UiDep, UiRoute, see_other
from modelyard.ui.sessions import PATH

router = APIRouter(prefix=f"{PATH}/jobs", route_class=UiRoute, include_in_schema=False)

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
PageNo = Annotated[int, Query(ge=1, le=10**9)]
EVENTS_SHOWN = 50


@router.get("")
def jobs_page(
    ui: UiDep, status: Status | None = None, page: PageNo = 1, size: int = 25
) -> Response:
    pages = pager(ui.request, page, size, status=status)
    rows, total = ui.platform.jobs.list_jobs(ui.caller, status, pages.size, pages.offset)
    return ui.page(
        "jobs.html", jobs=rows, pager=pages.with_total(total), status=status, statuses=STATUSES
    )


def _recent_events(ui: UiDep, job_id: str, last: int) -> list[object]:
    after = max(0, last - EVENTS_SHOWN)
    return list(reversed(ui.platform.jobs.events(ui.caller, job_id, after, EVENTS_SHOWN)))


def _panel_context(ui: UiDep, job_id: str) -> dict[str, object]:
    job = ui.platform.jobs.get(ui.caller, job_id)
    last = ui.platform.events.last_seq(job.id)
    return {
        "job": job,
        "events": _recent_events(ui, job_id, last),
        "live": job.status not in TERMINAL,
        "event_count": last,
    }


@router.get("/{job_id}")
def job_page(ui: UiDep, job_id: str) -> Response:
    return ui.page("job.html", **_panel_context(ui, job_id))


@router.get("/{job_id}/panel")
def job_panel(ui: UiDep, job_id: str) -> Response:
    """The job's status and latest events (htmx polls this while the job runs)."""
    return ui.page("job_panel.html", **_panel_context(ui, job_id))


@router.get("/{job_id}/stream")
async def job_stream(
    ui: UiDep,
    job_id: str,
    after: Annotated[int, Query(ge=0, le=MAX_EVENT_SEQ)] = 0,
) -> StreamingResponse:
    """The job's events as Server-Sent Events: the API's own stream, for the session."""
    await run_in_threadpool(ui.platform.jobs.get, ui.caller, job_id)
    return StreamingResponse(
        _stream(ui.request, ui.platform, ui.caller, job_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/{job_id}/cancel")
async def cancel(ui: UiDep, job_id: str) -> Response:
    await ui.form()
    await run_in_threadpool(ui.platform.jobs.cancel, ui.caller, job_id)
    return see_other(f"{PATH}/jobs/{job_id}")
