"""Running an llm_finetune job's plan (:func:`modelyard.jobs.llm_runner.run_llm_finetune`,
which reads the same plan from its context)."""

from __future__ import annotations

from typing import Any

from modelyard.jobs.context import JobContext
from modelyard.jobs.llm_runner import run_llm_finetune
from modelyard.jobs.plans import LlmFineTunePlan


def run(ctx: JobContext, plan: LlmFineTunePlan) -> dict[str, Any]:
    """Fine-tune the plan's language model; returns the job's result."""
    return run_llm_finetune(ctx)
