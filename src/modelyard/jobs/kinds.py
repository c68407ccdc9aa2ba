"""The kinds of job: for each type, how a request is planned (in the server) and run (in a
worker process).

A planner checks a request against the data and the registry before anything is queued and
returns the job's stored spec; a runner is named as ``"module:function"`` and imported only
in the worker, so the server never loads what only jobs need.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.auth.access import Caller
from modelyard.datasets.service import DatasetService
from modelyard.errors import InvalidInput
from modelyard.jobs.compress_plan import (
    plan_compress,
    plan_distill,
    plan_evaluate,
    plan_finetune,
)
from modelyard.jobs.context import Runner
from modelyard.jobs.explain_plan import plan_explain
from modelyard.jobs.llm_plan import plan_llm_finetune
from modelyard.jobs.train_plan import plan_train
from modelyard.registry.service import ModelRegistry

Planner = Callable[[Caller, Mapping[str, Any], DatasetService, ModelRegistry, Path], dict[str, Any]]


@dataclass(frozen=True)
class JobKind:
    """One type of job: its planner, and its runner for each placement it supports."""

    name: str
    plan: Planner
    runner: str
    distributed: str | None = None
    """The runner of a plan with ``distributed`` on this machine (local executor)."""
    ray_distributed: str | None = None
    """The runner of a plan with ``distributed`` over a Ray cluster's nodes."""

    def load_runner(self, spec: Mapping[str, Any], executor: str) -> Runner:
        """The runner of a job of this kind with ``spec``, placed by ``executor``."""
        path = self.runner
        if spec.get("distributed"):
            placed = self.ray_distributed if executor == "ray" else self.distributed
            if placed is None:
                raise InvalidInput(f"distributed: {self.name} jobs do not run distributed")
            path = placed
        module, _, function = path.partition(":")
        found: Runner = getattr(importlib.import_module(module), function)
        return found


KINDS: dict[str, JobKind] = {
    "train": JobKind(
        "train",
        plan_train,
        "modelyard.jobs.train_runner:run_train",
        distributed="modelyard.jobs.distributed_runner:run_distributed_train",
        ray_distributed="modelyard.jobs.ray_distributed:run_distributed_on_ray",
    ),
    "compress": JobKind("compress", plan_compress, "modelyard.jobs.compress_runner:run_compress"),
    "finetune": JobKind("finetune", plan_finetune, "modelyard.jobs.compress_runner:run_compress"),
    "distill": JobKind("distill", plan_distill, "modelyard.jobs.compress_runner:run_distill"),
    "evaluate": JobKind("evaluate", plan_evaluate, "modelyard.jobs.compress_runner:run_evaluate"),
    "explain": JobKind("explain", plan_explain, "modelyard.jobs.explain_runner:run_explain"),
    "llm_finetune": JobKind(
        "llm_finetune", plan_llm_finetune, "modelyard.jobs.llm_runner:run_llm_finetune"
    ),
}
