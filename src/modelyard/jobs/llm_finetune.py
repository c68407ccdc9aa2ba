"""The llm_finetune kind in the shape every kind has: a planner returning its frozen plan
(:class:`~modelyard.jobs.plans.LlmFineTunePlan`), and a runner taking the context and the
plan. The work itself is :mod:`modelyard.jobs.llm_plan` and :mod:`modelyard.jobs.llm_runner`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelyard.auth.access import Caller
from modelyard.datasets.service import DatasetService
from modelyard.jobs.llm_plan import plan_llm_finetune
from modelyard.jobs.plans import LlmFineTunePlan
from modelyard.registry.service import ModelRegistry


def plan(
    caller: Caller,
    body: Mapping[str, Any],
    datasets: DatasetService,
    registry: ModelRegistry,
    work: Path,
) -> LlmFineTunePlan:
    """Validate an llm_finetune request and return the job's plan."""
    return LlmFineTunePlan.model_validate(plan_llm_finetune(caller, body, datasets, registry, work))
