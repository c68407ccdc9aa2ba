"""What a running job is given: :class:`JobContext`, the composition root of a worker.

Opened once per attempt (:func:`open_context`), a context holds the job's record (spec,
attempt, checkpoint), this process's own database connection and blob store, the job's
events (written through an :class:`~modelyard.jobs.events.EventBuffer`), and what is built
on them once: the registry, the data sets and the owner as a caller. Runners receive it with
their plan; they raise :class:`JobCancelled` when :meth:`JobContext.should_stop` says so, and
:class:`JobRequeued` when the job should run again from its last checkpoint.

Example (in a worker process)::

    ctx = open_context(settings, job_id, attempt)
    ctx.registry.get_version(ctx.owner, "digits-mlp", "latest")
    ctx.close()   # writes the events still held, closes the connections
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from pydantic import BaseModel
from sqlalchemy import select, update

from modelyard.auth.access import Caller, Scope
from modelyard.auth.projects import principal_roles
from modelyard.config import Settings
from modelyard.datasets.service import DatasetService
from modelyard.db.engine import Database, create_database
from modelyard.db.tables import Dataset, Job, Principal
from modelyard.errors import InvalidInput
from modelyard.jobs.events import EventBuffer, EventLog
from modelyard.registry.service import ModelRegistry
from modelyard.storage.base import BlobStore
from modelyard.storage.factory import build_blob_store

PlanT = TypeVar("PlanT", bound=BaseModel)

# How often a job reports that it is alive and looks for a cancel request.
POLL_INTERVAL_S = 0.5


class JobCancelled(Exception):
    """Raised inside a job when it was cancelled or taken over by another attempt."""


class JobRequeued(Exception):
    """Raised inside a job that should run again from its last checkpoint (a lost node)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass
class JobContext:
    """What a running job may use: its record, storage, events and a stop signal."""

    settings: Settings
    db: Database
    blobs: BlobStore
    events: EventLog
    job_id: str
    attempt: int
    owner_id: str
    spec: dict[str, Any]
    checkpoint_sha: str | None
    checkpoint_step: int | None
    job_type: str = "train"
    # The project the job was submitted in: what it registers goes there.
    project_id: str | None = None
    _last_poll: float = field(default=0.0)
    _stop: bool = field(default=False)
    _plans: dict[type[BaseModel], BaseModel] = field(default_factory=dict)
    _outbox: EventBuffer | None = field(default=None)

    @property
    def outbox(self) -> EventBuffer:
        """The job's events on their way to the event log (frequent ones written together)."""
        if self._outbox is None:
            self._outbox = EventBuffer(self.events, self.job_id)
        return self._outbox

    def should_stop(self) -> bool:
        """True once the job is cancelled or re-assigned; also sends the heartbeat."""
        now = time.monotonic()
        if self._stop or now - self._last_poll < POLL_INTERVAL_S:
            return self._stop
        self._last_poll = now
        self.outbox.flush(if_due=True)
        with self.db.session() as session:
            job = session.get(Job, self.job_id)
            if job is None or job.cancel_requested or job.attempt != self.attempt:
                self._stop = True
            elif job.status == "running":
                job.heartbeat_at = datetime.now(UTC)
        return self._stop

    def update(self, **values: Any) -> None:
        """Set fields of the job row (progress, eta_s, metrics, checkpoint…)."""
        with self.db.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.attempt == self.attempt)
                .values(**values)
            )

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        """Record an event of the job (a ``step`` event may be written a moment later)."""
        self.outbox.add(type_, data)

    def flush(self) -> None:
        """Write the events still held (before the job's outcome is recorded)."""
        self.outbox.flush()

    def close(self) -> None:
        """Write the events still held and close this context's connections."""
        try:
            self.flush()
        finally:
            self.db.dispose()

    def log(self, message: str) -> None:
        self.emit("log", {"message": message})

    def plan(self, kind: type[PlanT]) -> PlanT:
        """The job's stored plan, read as ``kind`` (its kind's plan, such as
        :class:`~modelyard.jobs.train.plan.TrainPlan`), parsed once per context."""
        plan = self._plans.get(kind)
        if plan is None:
            plan = self._plans[kind] = kind.model_validate(self.spec)
        return cast(PlanT, plan)

    @functools.cached_property
    def registry(self) -> ModelRegistry:
        """The model registry, on this context's connections (built once)."""
        return registry_for(self.settings, self.db, self.blobs)

    @functools.cached_property
    def datasets(self) -> DatasetService:
        """The data sets, on this context's connections (built once)."""
        return DatasetService(self.db, self.blobs, self.settings.tmp_dir)

    @functools.cached_property
    def owner(self) -> Caller:
        """The job's owner, as the caller whose rights the job uses (read once)."""
        with self.db.session() as session:
            owner = session.get_one(Principal, self.owner_id)
            return Caller(
                principal_id=owner.id,
                name=owner.name,
                is_admin=owner.is_admin,
                scopes=frozenset({Scope.READ.value, Scope.WRITE.value}),
                key_id="",
                project_id=self.project_id,
                project_roles=principal_roles(session, owner.id),
            )

    def dataset(self, *, dataset_id: str | None, name: str | None) -> Dataset:
        """A data set the job reads, by id (or by name); InvalidInput once it is gone."""
        with self.db.session() as session:
            if dataset_id is not None:
                row = session.get(Dataset, dataset_id)
            else:
                row = session.scalar(select(Dataset).where(Dataset.name == name))
        if row is None:
            raise InvalidInput(f"the data set '{name or dataset_id}' was deleted before training")
        return row


def registry_for(settings: Settings, db: Database, blobs: BlobStore) -> ModelRegistry:
    """The registry a server or a worker uses; a version's files may be several uploads big."""
    return ModelRegistry(db, blobs, settings.tmp_dir, settings.max_upload_bytes * 4)


def open_context(settings: Settings, job_id: str, attempt: int) -> JobContext:
    """A :class:`JobContext` of attempt ``attempt`` with this process's own connections."""
    db = create_database(settings.resolved_database_url)
    with db.session() as session:
        job = session.get_one(Job, job_id)
        return JobContext(
            settings=settings,
            db=db,
            blobs=build_blob_store(settings),
            events=EventLog(db),
            job_id=job_id,
            attempt=attempt,
            owner_id=job.owner_id,
            spec=dict(job.spec),
            checkpoint_sha=job.checkpoint_sha,
            checkpoint_step=job.checkpoint_step,
            job_type=job.type,
            project_id=job.project_id,
        )


def worker_threads(settings: Settings) -> int:
    """CPU threads for one worker, so that the busy slots together fill the machine."""
    if settings.job_threads is not None:
        return settings.job_threads
    return max(1, (os.cpu_count() or 1) // settings.executor_slots)


def owner_caller(ctx: JobContext) -> Caller:
    """The job's owner as a caller (:attr:`JobContext.owner`)."""
    return ctx.owner
