"""The kinds of job: for each type, its plan, how a request is planned (in the server) and
which runner runs the plan (in a worker process) for each placement the kind supports.

A planner checks a request against the data and the registry before anything is queued and
returns the kind's frozen plan; the worker reads the stored plan back once and hands it to
the runner. Runners are named as ``"module:function"`` and imported only in the worker, so
the server never loads what only jobs need (PyTorch, Ray)::

    kind = KINDS["train"]
    plan = kind.plan(caller, body, datasets, registry, work)       # in the server
    result = kind.run(ctx, placement="local")                      # in the worker
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
from modelyard.jobs import llm_finetune
from modelyard.jobs.compress.plan import DistillPlan, SourcePlan, plan_compress, plan_distill
from modelyard.jobs.context import JobContext
from modelyard.jobs.evaluate.plan import EvaluatePlan, plan_evaluate
from modelyard.jobs.explain.plan import ExplainPlan, plan_explain
from modelyard.jobs.finetune.plan import plan_finetune
from modelyard.jobs.placement import Placement
from modelyard.jobs.plans import JobPlan, LlmFineTunePlan
from modelyard.jobs.train.plan import TrainPlan, plan_train
from modelyard.registry.service import ModelRegistry

Planner = Callable[[Caller, Mapping[str, Any], DatasetService, ModelRegistry, Path], JobPlan]
"""What plans one kind of job: the caller, the request, the services and a scratch folder in,
the frozen plan out."""

Runner = Callable[[JobContext, Any], dict[str, Any]]
"""What runs one kind of job: the context and the kind's plan in, the job's result out."""


@dataclass(frozen=True)
class JobKind:
    """One type of job: its plan, its planner, and its runner for each placement."""

    name: str
    plan_type: type[JobPlan]
    plan: Planner
    runners: Mapping[Placement, str]

    def runner(self, placement: Placement) -> Runner:
        """The runner of a job of this kind placed as ``placement``."""
        path = self.runners.get(placement)
        if path is None:
            raise InvalidInput(f"distributed: {self.name} jobs do not run distributed")
        module, _, function = path.partition(":")
        found: Runner = getattr(importlib.import_module(module), function)
        return found

    def run(self, ctx: JobContext, placement: Placement) -> dict[str, Any]:
        """Run the job of ``ctx``, placed as ``placement``; returns its result."""
        return self.runner(placement)(ctx, ctx.plan(self.plan_type))


def _local(path: str) -> dict[Placement, str]:
    return {"local": path}


KINDS: dict[str, JobKind] = {
    "train": JobKind(
        "train",
        TrainPlan,
        plan_train,
        {
            "local": "modelyard.jobs.train.runner:run_train",
            "ddp": "modelyard.jobs.train.distributed:run_distributed_train",
            "ray": "modelyard.jobs.ray_distributed:run_distributed_on_ray",
        },
    ),
    "compress": JobKind(
        "compress", SourcePlan, plan_compress, _local("modelyard.jobs.compress.runner:run_compress")
    ),
    "finetune": JobKind(
        "finetune", SourcePlan, plan_finetune, _local("modelyard.jobs.finetune.runner:run_finetune")
    ),
    "distill": JobKind(
        "distill", DistillPlan, plan_distill, _local("modelyard.jobs.compress.runner:run_distill")
    ),
    "evaluate": JobKind(
        "evaluate",
        EvaluatePlan,
        plan_evaluate,
        _local("modelyard.jobs.evaluate.runner:run_evaluate"),
    ),
    "explain": JobKind(
        "explain", ExplainPlan, plan_explain, _local("modelyard.jobs.explain.runner:run_explain")
    ),
    "llm_finetune": JobKind(
        "llm_finetune",
        LlmFineTunePlan,
        llm_finetune.plan,
        _local("modelyard.jobs.llm_finetune_runner:run"),
    ),
}
