"""The ordered event log of a job: appended by the worker, read and streamed by the API."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.db.engine import Database
from modelyard.db.tables import JobEvent


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
