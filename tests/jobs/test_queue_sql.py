"""The job queue's guarded transitions, on SQLite and on PostgreSQL.

Two executors (two server processes sharing one metadata store) claim from the same queue;
a job goes back to the queue and to its next attempt; a worker of an earlier attempt can
neither finish the job nor move it. Only the process part of an executor is left out here
(``_spawn`` is never reached): the SQL is the real one, on the real databases.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from modelyard.config import Settings
from modelyard.db.engine import Database
from modelyard.db.tables import Job, Principal
from modelyard.jobs.events import EventLog
from modelyard.jobs.executor import Executor, Exit
from modelyard.jobs.state import finish, requeue


class _QueueOnly(Executor[None]):
    """An executor whose queue is real and whose workers are never started."""

    def _spawn(self, job_id: str, attempt: int) -> tuple[None, str]:
        raise AssertionError("not started in this test")

    def _exit(self, handle: None) -> Exit | None:
        return None

    def _kill(self, handle: None) -> None:
        return None


@pytest.fixture
def db(migrated_db: Database) -> Database:
    return migrated_db


def _queued(db: Database, count: int) -> list[str]:
    ids = []
    with db.session() as session:
        owner = Principal(name=f"owner-{time.monotonic_ns()}")
        session.add(owner)
        session.flush()
        for _ in range(count):
            job = Job(type="train", owner_id=owner.id, spec={})
            session.add(job)
            session.flush()
            ids.append(job.id)
    return ids


def _row(db: Database, job_id: str) -> Job:
    with db.session() as session:
        return session.get_one(Job, job_id)


def test_two_executors_claim_each_job_once_oldest_first(db: Database, tmp_path: Path) -> None:
    ids = _queued(db, 6)
    events = EventLog(db)
    settings = Settings(data_dir=tmp_path)
    executors = [_QueueOnly(settings, db, events, 1) for _ in range(2)]
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def drain(executor: _QueueOnly) -> None:
        while (got := executor._claim()) is not None:
            with lock:
                claimed.append(got)

    threads = [threading.Thread(target=drain, args=(e,)) for e in executors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(job_id for job_id, _ in claimed) == sorted(ids)
    assert {attempt for _, attempt in claimed} == {1}
    assert all(_row(db, job_id).status == "running" for job_id in ids)
    # Each claim is recorded once on the job's event log.
    for job_id in ids:
        statuses = [e.data["status"] for e in events.after(job_id, 0, 100) if e.type == "status"]
        assert statuses == ["running"]


def test_a_requeued_job_runs_again_and_only_its_current_attempt_may_end_it(
    db: Database, tmp_path: Path
) -> None:
    (job_id,) = _queued(db, 1)
    events = EventLog(db)
    executor = _QueueOnly(Settings(data_dir=tmp_path), db, events, 1)
    assert executor._claim() == (job_id, 1)
    assert requeue(db, events, job_id, 1, "its worker was lost")
    assert not requeue(db, events, job_id, 1, "twice")  # already back in the queue
    assert _row(db, job_id).status == "queued"
    assert executor._claim() == (job_id, 2)
    # The first attempt's worker, still running somewhere, can neither finish nor requeue it.
    assert not finish(events, job_id, "succeeded", attempt=1, result={"stale": True})
    assert not requeue(db, events, job_id, 1, "stale")
    row = _row(db, job_id)
    assert (row.status, row.attempt, row.result) == ("running", 2, None)
    assert finish(events, job_id, "succeeded", attempt=2, result={"model": "m"})
    assert not finish(events, job_id, "failed", attempt=2, error="late")
    row = _row(db, job_id)
    assert (row.status, row.result, row.error) == ("succeeded", {"model": "m"}, None)
