"""The parts every job request is built of: the strict base model, a version reference, a
catalog spec whose shape may default, an optimizer given by name or object, and the fields of
a job that compares a child version with its parent.

Each kind's own request lives in its package (``jobs/<kind>/request.py``); the union the API
takes is :data:`modelyard.jobs.requests.JobRequest`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, PlainValidator

from modelyard.compression.methods import Gate
from modelyard.jobs.resources import JobResources
from modelyard.nn.specs import ArchSpec
from modelyard.training.config import OptimizerConfig


class RequestModel(BaseModel):
    """A part of a job request: frozen, and unknown fields are refused (422 naming them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _spec_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError("must be an object such as {'arch': 'mlp', 'hidden': [128]}")
    return dict(value)


ArchSpecInRequest: TypeAlias = Annotated[
    dict[str, Any], PlainValidator(_spec_object, json_schema_input_type=ArchSpec)
]
"""A catalog spec whose ``input_shape`` and ``num_outputs`` may default (from the data set, or
the teacher); the planner checks it field by field once they are known, and the schema says
so (:func:`modelyard.jobs.requests.job_request_schema`)."""

OptimizerChoice: TypeAlias = Annotated[
    OptimizerConfig | str,
    Field(description="A name (adam, adamw, sgd, gd, rmsprop; any case) or an object."),
]


class VersionRef(RequestModel):
    """A model version: ``{"model": "digits-mlp", "version": "3"}`` (number or alias)."""

    model: str
    version: str | int = "latest"


class ComparedRequest(RequestModel):
    """The fields of a job that makes a child version and compares it with its parent."""

    eval_dataset: str = Field(description="Held-out data set both sides are evaluated on.")
    label: str | None = None
    output_model: str | None = None
    gate: Gate | None = Field(default=None, description="When a child is not good enough.")
    description: str = ""
    resources: JobResources | None = None
