"""Jobs and their events."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from modelyard.api.schemas.common import PrincipalRef, Schema, UtcDatetime, project_name
from modelyard.db.tables import Job, JobEvent
from modelyard.jobs.requests import job_request_schema

# Event numbers are stored in 32-bit columns (PostgreSQL's INTEGER); none can be larger.
MAX_EVENT_SEQ = 2**31 - 1

TRAIN_EXAMPLE = {
    "type": "train",
    "model": {"spec": {"arch": "mlp", "input_shape": [64], "hidden": [128], "num_outputs": 10}},
    "dataset": "digits",
    "label": "y",
    "optimizer": {"name": "adam", "lr": 0.001},
    "epochs": 10,
    "batch_size": 64,
    "validation": {"fraction": 0.2},
}
FLAT_EXAMPLE = {
    "model_name": "mlp",
    "data": "digits",
    "optimizer": "adam",
    "learning_rate": 0.001,
    "epochs": 5,
}

JOB_REQUEST = "JobRequest"
"""The name of the job request's schema in the OpenAPI document."""

JOB_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": (
            "A job of any kind, told apart by 'type' (see docs/api.md); the flat train form "
            "{model_name, data, optimizer, learning_rate, epochs} needs none."
        ),
        "content": {
            "application/json": {
                "schema": {"$ref": f"#/components/schemas/{JOB_REQUEST}"},
                "examples": {
                    "train": {"value": TRAIN_EXAMPLE},
                    "flat": {"value": FLAT_EXAMPLE},
                },
            }
        },
    }
}


def declare_job_request(document: dict[str, Any]) -> dict[str, Any]:
    """Put the job request's schema, and every schema it refers to, in the document."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schema, definitions = job_request_schema("#/components/schemas/{model}")
    for name, definition in definitions.items():
        schemas.setdefault(name, definition)
    schemas[JOB_REQUEST] = schema
    return document


class JobOut(Schema):
    id: str
    type: str
    status: str = Field(description="queued, running, succeeded, failed or cancelled.")
    owner: PrincipalRef
    project: str | None = Field(default=None, description="The project it runs in.")
    spec: dict[str, Any]
    progress: float
    eta_s: float | None
    metrics: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    attempt: int
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id,
            type=job.type,
            status=job.status,
            owner=PrincipalRef.of(job.owner),
            project=project_name(job),
            spec=job.spec,
            progress=job.progress,
            eta_s=job.eta_s,
            metrics=job.metrics,
            result=job.result,
            error=job.error,
            attempt=job.attempt,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class EventOut(Schema):
    seq: int
    at: UtcDatetime
    type: str
    data: dict[str, Any]

    @classmethod
    def of(cls, event: JobEvent) -> EventOut:
        return cls(seq=event.seq, at=event.at, type=event.type, data=event.data)
