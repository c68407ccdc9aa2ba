"""A job's checkpoint in the blob store: written by its current attempt, read by the next.

One checkpoint per job: storing a new one moves the job's record to it (only while the job is
on the writer's attempt, so a stale worker of an earlier attempt cannot replace or delete the
checkpoint its successor resumes from) and releases the previous one once that commits::

    if store_checkpoint(ctx, work, state, step=120):
        ctx.emit("checkpoint", {"step": 120})
    resume = load_checkpoint(ctx, work)   # None before the first checkpoint
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import update

from modelyard.db.tables import Job
from modelyard.jobs.context import JobContext
from modelyard.storage.refs import add_refs, delete_unreferenced, drop_refs
from modelyard.training.checkpoint import checkpoint_from_bytes, checkpoint_to_bytes

CHECKPOINT_REF = "job"
"""The reference type under which a job holds its checkpoint blob."""


def store_checkpoint(ctx: JobContext, work: Path, state: dict[str, Any], *, step: int) -> bool:
    """Store ``state`` as the job's checkpoint at ``step``; False if the job moved on to
    another attempt (the state is then discarded)."""
    path = work / "checkpoint.bin"
    path.write_bytes(checkpoint_to_bytes(state))
    info = ctx.blobs.put_file(path)
    with ctx.db.session() as session:
        current = session.execute(
            update(Job)
            .where(Job.id == ctx.job_id, Job.attempt == ctx.attempt)
            .values(checkpoint_sha=info.sha256, checkpoint_step=step)
        ).rowcount  # type: ignore[attr-defined]
        if not current:
            delete_unreferenced(session, ctx.blobs, [info.sha256])
            return False
        old = drop_refs(session, CHECKPOINT_REF, ctx.job_id)
        add_refs(session, CHECKPOINT_REF, ctx.job_id, [info.sha256])
        session.flush()
        delete_unreferenced(session, ctx.blobs, [h for h in old if h != info.sha256])
    return True


def load_checkpoint(ctx: JobContext, work: Path) -> dict[str, Any] | None:
    """The checkpoint the job's attempt resumes from, or None if it has none."""
    if not ctx.checkpoint_sha:
        return None
    data = ctx.blobs.fetch_to(ctx.checkpoint_sha, work / "resume.bin").read_bytes()
    return checkpoint_from_bytes(data)
