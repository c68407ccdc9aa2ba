"""The ordered event log of a job: appended by the worker, read and streamed by the API.

A worker writes through an :class:`EventBuffer`, which holds the frequent ``step`` events and
writes them together (one transaction for many) instead of one database write each::

    buffer = EventBuffer(EventLog(db), job_id)
    buffer.add("step", {"step": 10, "loss": 0.4})   # held
    buffer.add("epoch", {"epoch": 1})               # writes the held step, then the epoch
    buffer.flush()                                  # before the job's outcome is recorded
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.db.engine import Database
from modelyard.db.tables import JobEvent, utcnow

# Events a worker may hold for a while and write together: many per second, read as a curve.
BATCHED_TYPES = frozenset({"step"})
# How long a held event may wait before it is written, and how many are held at most.
MAX_WAIT_S = 2.0
MAX_HELD = 256


@dataclass(frozen=True)
class PendingEvent:
    """An event not yet written, with the time it happened (what readers see as ``at``)."""

    type: str
    data: dict[str, Any]
    at: datetime = field(default_factory=utcnow)


class EventLog:
    """Events are numbered 1, 2, 3… per job, so a reader can resume after the last it saw."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def append(self, job_id: str, type_: str, data: dict[str, Any] | None = None) -> int:
        """Append one event; returns its number."""
        return self.transact(job_id, type_, data, lambda _session: True) or 0

    def transact(
        self,
        job_id: str,
        type_: str,
        data: dict[str, Any] | None,
        change: Callable[[Session], bool],
    ) -> int | None:
        """Apply ``change`` and, if it returns True, append an event in the same transaction.

        Readers therefore never see a change without its event. Returns the event's number,
        or None when ``change`` declined.
        """
        for _attempt in range(10):
            with self._db.session() as session:
                if not change(session):
                    return None
                last = session.scalar(
                    select(func.max(JobEvent.seq)).where(JobEvent.job_id == job_id)
                )
                seq = (last or 0) + 1
                session.add(JobEvent(job_id=job_id, seq=seq, type=type_, data=data or {}))
                try:
                    session.flush()
                except IntegrityError:
                    session.rollback()
                    continue  # another writer took this number; redo the whole change
                return seq
        raise RuntimeError(f"could not append an event to job {job_id}")

    def extend(self, job_id: str, events: Sequence[PendingEvent]) -> int:
        """Append ``events`` in order, in one transaction; returns the last one's number."""
        if not events:
            return self.last_seq(job_id)
        for _attempt in range(10):
            with self._db.session() as session:
                last = session.scalar(
                    select(func.max(JobEvent.seq)).where(JobEvent.job_id == job_id)
                )
                first = (last or 0) + 1
                session.add_all(
                    JobEvent(job_id=job_id, seq=first + i, type=e.type, data=e.data, at=e.at)
                    for i, e in enumerate(events)
                )
                try:
                    session.flush()
                except IntegrityError:
                    session.rollback()
                    continue  # another writer took these numbers; number them again
                return first + len(events) - 1
        raise RuntimeError(f"could not append events to job {job_id}")

    def last_seq(self, job_id: str) -> int:
        """The number of the job's latest event (0: none yet)."""
        with self._db.session() as session:
            last = session.scalar(select(func.max(JobEvent.seq)).where(JobEvent.job_id == job_id))
            return int(last or 0)

    def after(
        self, job_id: str, seq: int = 0, limit: int = 1000, types: Sequence[str] | None = None
    ) -> list[JobEvent]:
        """Events numbered above ``seq``, oldest first."""
        with self._db.session() as session:
            query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > seq)
            if types:
                query = query.where(JobEvent.type.in_(types))
            return list(session.scalars(query.order_by(JobEvent.seq).limit(limit)))


class EventBuffer:
    """One job's events as its worker writes them, in order.

    Events of :data:`BATCHED_TYPES` are held and written together once the oldest has waited
    :data:`MAX_WAIT_S`, once :data:`MAX_HELD` are held, or before any other event (so the
    order is kept); each keeps the time it happened. Safe to use from several threads.
    """

    def __init__(self, log: EventLog, job_id: str) -> None:
        self._log = log
        self._job_id = job_id
        self._held: list[PendingEvent] = []
        self._oldest = 0.0
        self._lock = threading.Lock()

    def add(self, type_: str, data: dict[str, Any] | None = None) -> None:
        """Record one event: held if it is frequent, else written now after the held ones."""
        event = PendingEvent(type_, data or {})
        with self._lock:
            if type_ not in BATCHED_TYPES:
                self._held.append(event)
                self._write()
                return
            if not self._held:
                self._oldest = time.monotonic()
            self._held.append(event)
            if len(self._held) >= MAX_HELD or time.monotonic() - self._oldest >= MAX_WAIT_S:
                self._write()

    def flush(self, *, if_due: bool = False) -> None:
        """Write every held event (with ``if_due``, only once the oldest waited long enough)."""
        with self._lock:
            if self._held and (not if_due or time.monotonic() - self._oldest >= MAX_WAIT_S):
                self._write()

    def _write(self) -> None:
        held, self._held = self._held, []
        self._log.extend(self._job_id, held)
