"""What compress and distill jobs take: a method applied to a version, or a student trained
on a teacher's outputs; both compare the child with its parent on held-out data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BeforeValidator, Discriminator, Field, Tag

from modelyard.compression.methods import DistillOptions, Method
from modelyard.jobs.request_base import (
    ArchSpecInRequest,
    ComparedRequest,
    OptimizerChoice,
    RequestModel,
    VersionRef,
)


class StudentModel(RequestModel):
    """The student of a distillation: ``{"spec": {"arch": "mlp", "hidden": [32]}}``."""

    spec: ArchSpecInRequest = Field(
        description="A catalog spec; input_shape and num_outputs default to the teacher's."
    )


def _student_form(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return "spec" if "spec" in value else "arch"
    return "spec" if isinstance(value, StudentModel) else None


StudentSection: TypeAlias = Annotated[
    Annotated[StudentModel, Tag("spec")] | Annotated[ArchSpecInRequest, Tag("arch")],
    Discriminator(_student_form),
]


def _method_by_name(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class CompressRequest(ComparedRequest):
    """Quantize, prune, cast or export a version: ``{"type": "compress", "source": {...},
    "method": {"name": "quantize"}, "eval_dataset": "digits"}``."""

    type: Literal["compress"]
    source: VersionRef
    method: Annotated[Method, BeforeValidator(_method_by_name)] = Field(
        description="The method: an object, or its name alone for its defaults."
    )


class DistillRequest(ComparedRequest):
    """Train a small student on a teacher's outputs: ``{"type": "distill", "teacher": {...},
    "student": {"spec": {...}}, "dataset": ...}``."""

    type: Literal["distill"]
    teacher: VersionRef
    student: StudentSection
    dataset: str
    temperature: Annotated[float, Field(gt=0.0, le=100.0)] = DistillOptions.model_fields[
        "temperature"
    ].default
    alpha: Annotated[float, Field(ge=0.0, le=1.0)] = DistillOptions.model_fields["alpha"].default
    epochs: Annotated[int, Field(gt=0, le=1000)] = 30
    batch_size: Annotated[int, Field(gt=0)] = 64
    optimizer: OptimizerChoice | None = None
    seed: Annotated[int, Field(ge=0)] = 0
