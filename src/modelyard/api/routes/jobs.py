"""Jobs: submit, list, show, cancel, events (list or live Server-Sent Events), logs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from modelyard.api.deps import CallerDep, Limit, Offset, PlatformDep
from modelyard.api.schemas.common import Page
from modelyard.api.schemas.jobs import JOB_BODY_DOC, MAX_EVENT_SEQ, EventOut, JobOut
from modelyard.auth.access import Caller
from modelyard.jobs.state import TERMINAL
from modelyard.platform import Platform

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

# How often a live stream looks for new events, and sends a comment to keep proxies open.
POLL_S = 0.2
KEEPALIVE_S = 15.0


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    openapi_extra=JOB_BODY_DOC,
    summary="Submit a job (train a model with one call)",
)
def create_job(
    platform: PlatformDep, caller: CallerDep, body: Annotated[dict[str, Any], Body()]
) -> JobOut:
    return JobOut.of(platform.jobs.submit(caller, body))


@router.get("", response_model=Page[JobOut])
def list_jobs(
    platform: PlatformDep,
    caller: CallerDep,
    status: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[JobOut]:
    rows, total = platform.jobs.list_jobs(caller, status, limit, offset)
    return Page[JobOut](items=[JobOut.of(j) for j in rows], total=total)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, platform: PlatformDep, caller: CallerDep) -> JobOut:
    return JobOut.of(platform.jobs.get(caller, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: str, platform: PlatformDep, caller: CallerDep) -> JobOut:
    return JobOut.of(platform.jobs.cancel(caller, job_id))


@router.get("/{job_id}/logs", response_class=PlainTextResponse)
def job_logs(job_id: str, platform: PlatformDep, caller: CallerDep) -> PlainTextResponse:
    return PlainTextResponse(platform.jobs.logs(caller, job_id))


@router.get(
    "/{job_id}/events",
    response_model=Page[EventOut],
    summary="Events as a list, or as a live stream with Accept: text/event-stream",
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(
    job_id: str,
    request: Request,
    platform: PlatformDep,
    caller: CallerDep,
    after: Annotated[
        int, Query(ge=0, le=MAX_EVENT_SEQ, description="Only events numbered above this.")
    ] = 0,
    limit: Limit = 500,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    await run_in_threadpool(platform.jobs.get, caller, job_id)
    if "text/event-stream" in request.headers.get("accept", ""):
        start = max(after, _event_seq(last_event_id))
        return StreamingResponse(
            _stream(request, platform, caller, job_id, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    events = await run_in_threadpool(platform.jobs.events, caller, job_id, after, limit)
    page = Page[EventOut](items=[EventOut.of(e) for e in events], total=len(events))
    return Response(page.model_dump_json(), media_type="application/json")


def _event_seq(last_event_id: str | None) -> int:
    """The event number a reconnecting client last saw (0 if it sent none it could have seen)."""
    value = (last_event_id or "").strip()
    if not (value.isascii() and value.isdigit()):
        return 0
    return min(int(value), MAX_EVENT_SEQ)


def _frame(event: EventOut) -> bytes:
    data = json.dumps({"seq": event.seq, "at": event.at.isoformat(), **event.data})
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n".encode()


async def _stream(
    request: Request, platform: Platform, caller: Caller, job_id: str, seq: int
) -> AsyncIterator[bytes]:
    idle = 0.0
    yield b"retry: 1000\n\n"
    while not await request.is_disconnected():
        job = await run_in_threadpool(platform.jobs.get, caller, job_id)
        # Read the events after reading the status: a job seen finished has all its events.
        events = await run_in_threadpool(platform.jobs.events, caller, job_id, seq, 500)
        for event in events:
            yield _frame(EventOut.of(event))
            seq = event.seq
        if events:
            idle = 0.0
            continue
        if job.status in TERMINAL:
            yield b"event: end\ndata: {}\n\n"
            return
        await asyncio.sleep(POLL_S)
        idle += POLL_S
        if idle >= KEEPALIVE_S:
            idle = 0.0
            yield b": keep-alive\n\n"
