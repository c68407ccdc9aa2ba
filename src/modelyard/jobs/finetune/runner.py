"""Running a finetune job inside a worker process: the compress pipeline with the method
``finetune`` (the parent measured, trained further, the child measured, compared and
registered)."""

from __future__ import annotations

from typing import Any

from modelyard.jobs.compress.plan import SourcePlan
from modelyard.jobs.compress.runner import run_compress
from modelyard.jobs.context import JobContext


def run_finetune(ctx: JobContext, plan: SourcePlan) -> dict[str, Any]:
    """Fine-tune the plan's source version; returns the job's result."""
    return run_compress(ctx, plan)
