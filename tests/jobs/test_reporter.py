"""The job reporter, on SQLite and PostgreSQL: checkpoints stored in the background are all
there, in order, once its block ends; a checkpoint that cannot be stored fails the job's own
thread; an epoch moves the job's progress within the reporter's span."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from modelyard.config import Settings
from modelyard.db.tables import Job, Principal
from modelyard.jobs.context import JobContext, open_context
from modelyard.jobs.reporter import JobReporter
from modelyard.platform import Platform


def _state(step: int) -> dict[str, object]:
    return {"global_step": step, "epoch": step // 10, "model": {"w": torch.full((4, 4), step)}}


@pytest.fixture
def ctx(make_settings: Callable[..., Settings], database_url: str) -> Iterator[JobContext]:
    platform = Platform.build(make_settings(database_url=database_url))
    try:
        platform.auth.bootstrap(None)
        with platform.db.session() as session:
            owner = session.scalars(select(Principal)).one().id
            job = Job(type="train", owner_id=owner, spec={}, status="running", attempt=1)
            session.add(job)
            session.flush()
            job_id = job.id
        context = open_context(platform.settings, job_id, 1)
        yield context
        context.close()
    finally:
        platform.close()


def _job(ctx: JobContext) -> Job:
    with ctx.db.session() as session:
        return session.get_one(Job, ctx.job_id)


def test_every_checkpoint_is_stored_in_order_when_the_block_ends(
    ctx: JobContext, tmp_path: Path
) -> None:
    with JobReporter(ctx, tmp_path) as reporter:
        for step in (10, 20, 30):
            reporter.save_checkpoint(_state(step))
    assert _job(ctx).checkpoint_step == 30
    ctx.flush()
    stored = [e.data["step"] for e in ctx.events.after(ctx.job_id) if e.type == "checkpoint"]
    assert stored == [10, 20, 30]


def test_a_checkpoint_that_cannot_be_stored_fails_the_block(
    ctx: JobContext, tmp_path: Path
) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(FileNotFoundError), JobReporter(ctx, missing) as reporter:
        reporter.save_checkpoint(_state(10))
    assert _job(ctx).checkpoint_step is None


def test_an_epoch_moves_the_progress_within_the_span(ctx: JobContext, tmp_path: Path) -> None:
    reporter = JobReporter(ctx, tmp_path, span=(0.2, 0.8))
    reporter.on_epoch({"epoch": 1, "epochs": 2, "loss": 0.5, "progress": 0.5})
    job = _job(ctx)
    assert job.progress == pytest.approx(0.5)
    assert job.metrics["train"] == {"loss": 0.5} and job.metrics["epoch"] == 1
    reporter.on_event({"type": "step", "step": 3, "loss": 0.4})
    ctx.flush()
    kinds = [e.type for e in ctx.events.after(ctx.job_id)]
    assert kinds == ["epoch", "step"]
