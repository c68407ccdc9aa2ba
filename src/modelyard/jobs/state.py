"""Guarded status transitions of a job, shared by the server and its worker processes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from modelyard.db.engine import Database
from modelyard.db.tables import Job, ModelVersion
from modelyard.jobs.events import EventLog
from modelyard.usage.meter import job_usage_row

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def finish(
    events: EventLog,
    job_id: str,
    status: str,
    *,
    attempt: int | None = None,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
) -> bool:
    """Move a job that is not yet finished to a terminal status; False if it already was.

    With ``attempt`` the move only happens if the job is still on that attempt, so a worker
    that lost its job (re-queued after a crash) cannot overwrite its successor's outcome.
    The job's usage row (``usage``: what its worker measured; else its wall time) is written
    in the same transaction, so a finished job's usage is never lost.
    """
    assert status in TERMINAL
    values: dict[str, Any] = {"status": status, "finished_at": datetime.now(UTC)}
    if error is not None:
        values["error"] = error
    if result is not None:
        values["result"] = result
        values["progress"] = 1.0
        values["eta_s"] = 0.0
    data: dict[str, Any] = {"status": status}
    if error:
        data["error"] = error

    def change(session: Session) -> bool:
        query = update(Job).where(Job.id == job_id, Job.status.not_in(TERMINAL))
        if attempt is not None:
            query = query.where(Job.attempt == attempt)
        if not session.execute(query.values(**values)).rowcount:  # type: ignore[attr-defined]
            return False
        _meter(session, job_id, status, usage)
        return True

    return events.transact(job_id, "status", data, change) is not None


def requeue(db: Database, events: EventLog, job_id: str, attempt: int, why: str) -> bool:
    """Put a running job back in the queue (its next attempt resumes from its checkpoint).

    Only while it is still on ``attempt``; False if it no longer was.
    """
    with db.session() as session:
        changed = bool(
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "running", Job.attempt == attempt)
                .values(status="queued", runner=None)
            ).rowcount  # type: ignore[attr-defined]
        )
    if changed:
        events.append(job_id, "status", {"status": "queued", "reason": why})
    return changed


def _meter(session: Session, job_id: str, status: str, usage: dict[str, Any] | None) -> None:
    job = session.get(Job, job_id)
    if job is None:
        return
    measured = dict(usage or {})
    if "wall_s" not in measured and job.started_at is not None:
        started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=UTC)
        measured["wall_s"] = max(0.0, (datetime.now(UTC) - started).total_seconds())
    if "bytes_written" not in measured:
        measured["bytes_written"] = session.scalar(
            select(func.coalesce(func.sum(ModelVersion.size), 0)).where(
                ModelVersion.job_id == job_id
            )
        )
    session.add(
        job_usage_row(
            job_id,
            job.type,
            status,
            job.owner_id,
            {"project_id": getattr(job, "project_id", None), **(job.spec.get("usage") or {})},
            measured,
        )
    )
