"""A worker's event buffer, on SQLite and on PostgreSQL: step events are held and written
together, keep the time they happened and their order among the other events, and nothing
held is lost once the buffer is flushed."""

from __future__ import annotations

import time

import pytest

from modelyard.db.engine import Database
from modelyard.db.tables import Job, JobEvent, Principal
from modelyard.jobs import events as events_module
from modelyard.jobs.events import EventBuffer, EventLog


@pytest.fixture
def job_id(migrated_db: Database) -> str:
    with migrated_db.session() as session:
        owner = Principal(name=f"owner-{time.monotonic_ns()}")
        session.add(owner)
        session.flush()
        job = Job(type="train", owner_id=owner.id, spec={})
        session.add(job)
        session.flush()
        return job.id


def _stored(log: EventLog, job_id: str) -> list[JobEvent]:
    return log.after(job_id, 0)


def test_step_events_are_held_until_another_event_and_keep_their_order_and_time(
    migrated_db: Database, job_id: str
) -> None:
    log = EventLog(migrated_db)
    buffer = EventBuffer(log, job_id)
    buffer.add("step", {"step": 10})
    time.sleep(0.05)
    buffer.add("step", {"step": 20})
    assert _stored(log, job_id) == []
    buffer.add("epoch", {"epoch": 1})
    stored = _stored(log, job_id)
    assert [(e.seq, e.type, e.data) for e in stored] == [
        (1, "step", {"step": 10}),
        (2, "step", {"step": 20}),
        (3, "epoch", {"epoch": 1}),
    ]
    # Each step keeps the time it happened, not the time the batch was written.
    assert stored[1].at > stored[0].at


def test_flush_writes_what_is_held_and_a_later_writer_numbers_after_it(
    migrated_db: Database, job_id: str
) -> None:
    log = EventLog(migrated_db)
    buffer = EventBuffer(log, job_id)
    for step in (1, 2, 3):
        buffer.add("step", {"step": step})
    buffer.flush(if_due=True)
    assert _stored(log, job_id) == []
    buffer.flush()
    log.append(job_id, "status", {"status": "succeeded"})
    assert [e.type for e in _stored(log, job_id)] == ["step", "step", "step", "status"]
    assert [e.seq for e in _stored(log, job_id)] == [1, 2, 3, 4]


def test_held_events_are_written_once_they_waited_long_enough(
    migrated_db: Database, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "MAX_WAIT_S", 0.0)
    log = EventLog(migrated_db)
    buffer = EventBuffer(log, job_id)
    buffer.add("step", {"step": 1})
    assert [e.data for e in _stored(log, job_id)] == [{"step": 1}]


def test_at_most_max_held_events_wait(
    migrated_db: Database, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "MAX_HELD", 3)
    log = EventLog(migrated_db)
    buffer = EventBuffer(log, job_id)
    for step in range(1, 5):
        buffer.add("step", {"step": step})
    assert [e.data["step"] for e in _stored(log, job_id)] == [1, 2, 3]
