"""The ranks of a re-queued attempt that still run for a moment (their coordinator was lost
with its node, and Ray has not stopped them yet) leave the job's checkpoint alone."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from sqlalchemy import select, update

from modelyard.config import Settings
from modelyard.db.tables import Job, Principal
from modelyard.jobs.context import open_context
from modelyard.jobs.reporter import JobReporter
from modelyard.platform import Platform
from modelyard.training.checkpoint import checkpoint_to_bytes


def _state(step: int) -> dict[str, object]:
    return {"global_step": step, "epoch": 0, "model": {"weight": torch.full((2, 2), step)}}


def test_a_stale_attempt_cannot_move_or_delete_the_checkpoint_of_the_next(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    platform = Platform.build(make_settings(database_url=database_url))
    try:
        platform.auth.bootstrap(None)
        with platform.db.session() as session:
            owner = session.scalars(select(Principal)).one().id
            job = Job(type="train", owner_id=owner, spec={}, status="running", attempt=1)
            session.add(job)
            session.flush()
            job_id = job.id
        first = open_context(platform.settings, job_id, 1)
        (tmp_path / "first").mkdir()
        with JobReporter(first, tmp_path / "first") as reporter:
            reporter.save_checkpoint(_state(40))
        with platform.db.session() as session:
            kept = session.get_one(Job, job_id).checkpoint_sha
        assert kept is not None

        # Attempt 1 was re-queued and attempt 2 claimed the job; attempt 1's ranks run on.
        with platform.db.session() as session:
            session.execute(update(Job).where(Job.id == job_id).values(attempt=2))
        with JobReporter(first, tmp_path / "first") as reporter:
            reporter.save_checkpoint(_state(80))
        with platform.db.session() as session:
            row = session.get_one(Job, job_id)
            assert (row.checkpoint_sha, row.checkpoint_step) == (kept, 40)
        assert platform.blobs.exists(kept)
        stale = hashlib.sha256(checkpoint_to_bytes(_state(80))).hexdigest()
        assert not platform.blobs.exists(stale)
        steps = [e.data["step"] for e in platform.events.after(job_id, 0, 10)]
        assert steps == [40]

        # The current attempt moves it on, and the checkpoint it left is deleted.
        second = open_context(platform.settings, job_id, 2)
        (tmp_path / "second").mkdir()
        with JobReporter(second, tmp_path / "second") as reporter:
            reporter.save_checkpoint(_state(120))
        with platform.db.session() as session:
            row = session.get_one(Job, job_id)
            assert row.checkpoint_step == 120
            assert row.checkpoint_sha not in (None, kept)
        assert not platform.blobs.exists(kept)
        first.db.dispose()
        second.db.dispose()
    finally:
        platform.close()
