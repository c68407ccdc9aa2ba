"""The job service: submit (checked before queuing), list, show, cancel, events, logs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from modelyard.auth.access import Caller, Permission, Scope, may_reach, member_clause
from modelyard.auth.audit import record
from modelyard.datasets.privacy_budget import charge, release
from modelyard.datasets.service import DatasetService
from modelyard.db.engine import Database
from modelyard.db.tables import Job, JobEvent
from modelyard.errors import Forbidden, NotFound
from modelyard.jobs.events import EventLog
from modelyard.jobs.kinds import KINDS
from modelyard.jobs.requests import parse_job_request
from modelyard.jobs.resources import parse_resources
from modelyard.jobs.state import TERMINAL, finish
from modelyard.registry.service import ModelRegistry
from modelyard.storage.staging import scratch_dir


class JobService:
    """Owns the ``jobs`` and ``job_events`` tables; the executor runs what it queues."""

    def __init__(
        self,
        db: Database,
        datasets: DatasetService,
        registry: ModelRegistry,
        events: EventLog,
        tmp_dir: Path,
        wake: Callable[[], None],
        admit: Callable[[Caller], dict[str, Any]] | None = None,
    ) -> None:
        self._db = db
        self._datasets = datasets
        self._registry = registry
        self._events = events
        self._tmp = tmp_dir
        self._wake = wake
        # Checks quotas and the budget before anything is queued (modelyard.usage).
        self._admit = admit

    def submit(self, caller: Caller, body: Mapping[str, Any]) -> Job:
        """Check a job spec against its data and queue it; 422 names the field at fault."""
        caller.require(Scope.WRITE)
        metered = self._admit(caller) if self._admit is not None else None
        job_type = parse_job_request(body).type
        kind = KINDS[job_type]
        request = dict(body)
        resources = parse_resources(request.pop("resources", None))
        with scratch_dir(self._tmp, "plan-") as work:
            plan = kind.plan(caller, request, self._datasets, self._registry, work)
        spec = plan.model_dump(mode="json")
        if resources.cpus is not None or resources.gpus is not None:
            spec["resources"] = resources.model_dump(exclude_none=True)
        if metered is not None:
            spec["usage"] = metered
        with self._db.session() as session:
            job = Job(
                type=job_type,
                owner_id=caller.principal_id,
                project_id=caller.project_id,
                spec=spec,
            )
            session.add(job)
            session.flush()
            # A budgeted data set refuses what would overspend it (nothing is queued then).
            charge(session, caller, job.id, spec)
            record(session, caller, "job.create", f"job:{job.id}", {"type": job_type})
            session.refresh(job)
        self._events.append(job.id, "status", {"status": "queued"})
        self._wake()
        return job

    def list_jobs(
        self, caller: Caller, status: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Job], int]:
        caller.require(Scope.READ)
        where = [member_clause(caller, Job.owner_id, Job.project_id)]
        if status:
            where.append(Job.status == status)
        with self._db.session() as session:
            total = session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
            rows = session.scalars(
                select(Job)
                .where(*where)
                .order_by(Job.created_at.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return rows, total

    def get(self, caller: Caller, job_id: str, permission: Permission = Permission.READ) -> Job:
        caller.require(Scope.READ if permission is Permission.READ else Scope.WRITE)
        with self._db.session() as session:
            job = session.get(Job, job_id)
            if job is None or not may_reach(caller, job.owner_id, job.project_id, Permission.READ):
                raise NotFound(f"no job with id '{job_id}'")
            if not may_reach(caller, job.owner_id, job.project_id, permission):
                raise Forbidden(f"you may read but not change job '{job_id}'")
            return job

    def cancel(self, caller: Caller, job_id: str) -> Job:
        """Ask a job to stop; a queued job is cancelled at once, a running one within seconds."""
        job = self.get(caller, job_id, Permission.WRITE)
        if job.status not in TERMINAL:
            with self._db.session() as session:
                session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
                record(session, caller, "job.cancel", f"job:{job_id}")
            if job.status == "queued":
                finish(self._events, job_id, "cancelled")
                release(self._db, job_id)
            self._wake()
        return self.get(caller, job_id)

    def events(self, caller: Caller, job_id: str, after: int, limit: int) -> list[JobEvent]:
        self.get(caller, job_id)
        return self._events.after(job_id, after, limit)

    def logs(self, caller: Caller, job_id: str) -> str:
        self.get(caller, job_id)
        lines: list[str] = []
        seq = 0
        while True:
            batch = self._events.after(job_id, seq, 1000)
            if not batch:
                break
            for event in batch:
                lines.append(_log_line(event))
            seq = batch[-1].seq
        return "\n".join(lines) + ("\n" if lines else "")


def _log_line(event: JobEvent) -> str:
    at = event.at.strftime("%Y-%m-%d %H:%M:%S")
    data = event.data
    if event.type == "log":
        text = str(data.get("message", ""))
    elif event.type == "step":
        text = (
            f"epoch {data.get('epoch')} step {data.get('step')} loss {data.get('loss', 0):.4f} "
            f"lr {data.get('lr', 0):.3g} {data.get('samples_per_s', 0):.0f} samples/s"
        )
    elif event.type == "epoch":
        text = f"epoch {data.get('epoch')} train {data.get('train')} val {data.get('val')}"
    else:
        text = " ".join(f"{k}={v}" for k, v in data.items())
    return f"{at} [{event.type}] {text}"
