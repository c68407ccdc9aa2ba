"""What a planned job holds: one frozen model per kind, stored as the job's ``spec``.

A planner (run by the server when a job is submitted) checks the request against the data
and the registry and returns one of these; the worker reads it back once
(:meth:`modelyard.jobs.context.JobContext.plan`) and the runner uses its fields, never
string lookups. Versions are pinned by number and digest, data sets by id::

    plan = ctx.plan(TrainPlan)
    plan.output_model, plan.init.sha256 if plan.init else None
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelyard.compression.methods import DistillOptions, Gate, Method
from modelyard.jobs.resources import JobResources
from modelyard.training.distributed_config import DistributedConfig


class _Part(BaseModel):
    # Keys a plan no longer has, in jobs stored by an older server, are left aside.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Plan(_Part):
    resources: JobResources | None = Field(default=None, description="CPUs and GPUs per worker.")
    request: dict[str, Any] = Field(default_factory=dict, description="The request as sent.")


class InitWeights(_Part):
    """The version a train job starts from (a fine-tune), pinned by digest."""

    model: str
    version: int
    sha256: str
    replace_head: bool = False


class TrainPlan(_Plan):
    """A train job: the architecture, the data, the config and where the version goes."""

    type: Literal["train"] = "train"
    arch_spec: dict[str, Any]
    init: InitWeights | None = None
    dataset: str
    dataset_id: str
    label: str | None
    features: list[str] | None = None
    validation_dataset: str | None = None
    output_model: str
    config: dict[str, Any]
    distributed: DistributedConfig | None = None
    privacy: dict[str, Any] | None = Field(
        default=None,
        description="A private run's plan: noise_multiplier, sample_rate, steps, and the "
        "epsilon and delta the whole run spends (what the data set's budget reserves).",
    )


class PinnedVersion(_Part):
    """A model version pinned by number, digest and format."""

    model: str
    version: int
    sha256: str
    format: str


class EvaluatePlan(_Plan):
    """An evaluate job: one version's metrics on a data set."""

    type: Literal["evaluate"] = "evaluate"
    source: PinnedVersion
    eval_dataset: str
    eval_dataset_id: str
    label: str | None


class _ChildPlan(_Plan):
    """A job that makes a child version and compares it with its parent on held-out data."""

    eval_dataset: str
    eval_dataset_id: str
    fit_dataset: str | None = None
    fit_dataset_id: str | None = None
    label: str | None
    output_model: str
    gate: Gate | None = None
    description: str = ""


class SourcePlan(_ChildPlan):
    """A compress or finetune job: a method applied to one version."""

    type: Literal["compress", "finetune"]
    source: PinnedVersion
    method: Method
    privacy: dict[str, Any] | None = Field(
        default=None, description="A private fine-tune's plan, as a train plan's privacy."
    )


class DistillPlan(_ChildPlan):
    """A distill job: a student trained on a teacher's outputs."""

    type: Literal["distill"] = "distill"
    teacher: PinnedVersion
    student_spec: dict[str, Any]
    options: DistillOptions
    fit_dataset: str
    fit_dataset_id: str


class LlmBase(_Part):
    """The causal language model an llm_finetune job starts from."""

    model: str
    version: int
    sha256: str
    model_id: str


class LlmLora(_Part):
    """Low-rank adapters' shape (used with ``method: lora``)."""

    r: int
    alpha: int
    dropout: float


class LlmFineTunePlan(_Plan):
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
