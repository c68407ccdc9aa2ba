"""The parts every job's plan is made of: one frozen model per kind, stored as the job's
``spec``.

A planner (run by the server when a job is submitted) checks the request against the data
and the registry and returns its kind's plan (``jobs/<kind>/plan.py``, built on
:class:`JobPlan`); the worker reads it back once and hands it to the runner, which uses its
fields, never string lookups. Versions are pinned by number and digest, data sets by id::

    plan = TrainPlan.model_validate(job.spec)
    plan.output_model, plan.init.sha256 if plan.init else None
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelyard.compression.methods import Gate
from modelyard.jobs.resources import JobResources


class PlanPart(BaseModel):
    """A part of a stored plan (frozen)."""

    # Keys a plan no longer has, in jobs stored by an older server, are left aside.
    model_config = ConfigDict(extra="ignore", frozen=True)


class JobPlan(PlanPart):
    """What every kind's plan holds besides its own fields."""

    resources: JobResources | None = Field(default=None, description="CPUs and GPUs per worker.")
    request: dict[str, Any] = Field(default_factory=dict, description="The request as sent.")


class PinnedVersion(PlanPart):
    """A model version pinned by number, digest and format."""

    model: str
    version: int
    sha256: str
    format: str


class ChildPlan(JobPlan):
    """A job that makes a child version and compares it with its parent on held-out data."""

    eval_dataset: str
    eval_dataset_id: str
    fit_dataset: str | None = None
    fit_dataset_id: str | None = None
    label: str | None
    output_model: str
    gate: Gate | None = None
    description: str = ""


class LlmBase(PlanPart):
    """The causal language model an llm_finetune job starts from."""

    model: str
    version: int
    sha256: str
    model_id: str


class LlmLora(PlanPart):
    """Low-rank adapters' shape (used with ``method: lora``)."""

    r: int
    alpha: int
    dropout: float
    merge: bool = False


class LlmFineTunePlan(JobPlan):
    """An llm_finetune job: chat examples, hyperparameters and the names it registers."""

    type: Literal["llm_finetune"] = "llm_finetune"
    base: LlmBase
    training_file: str
    training_dataset_id: str
    training_sha256: str
    validation_file: str | None = None
    validation_sha256: str | None = None
    method: Literal["full", "lora"]
    hyperparameters: dict[str, Any]
    lora: LlmLora
    seed: int
    suffix: str
    output_model: str
    fine_tuned_model: str
    deployment: str
