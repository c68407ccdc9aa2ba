"""Deployments and predictions."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from modelyard.api.schemas.common import PrincipalRef, Schema, UtcDatetime, project_name
from modelyard.db.tables import Deployment
from modelyard.serving import defaults
from modelyard.serving.manager import Live


class DeploymentCreate(Schema):
    """A deployment: a name, what it serves, and how requests are batched."""

    name: str
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "name": "digits",
                    "model": "digits-mlp",
                    "version": "production",
                    "max_batch_size": defaults.MAX_BATCH_SIZE,
                    "max_batch_delay_ms": defaults.MAX_BATCH_DELAY_MS,
                },
                {
                    "name": "digits-canary",
                    "model": "digits-mlp",
                    "traffic": [{"version": "1", "weight": 90}, {"version": "2", "weight": 10}],
                },
                {"name": "text-classifier", "pipeline": ["embedder", "classifier"]},
                # A LoRA adapter version, run on the deployment serving its base version.
                {"name": "mars", "model": "ft-tiny-mars-1a2b3c4d", "base": "tiny"},
            ]
        },
    )


class ServedVersion(Schema):
    version: int
    weight: float
    runtime: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


class DeploymentOut(Schema):
    id: str
    name: str
    spec: dict[str, Any]
    status: str = Field(description="loading, ready or failed (on this server).")
    error: str | None
    versions: list[ServedVersion]
    owner: PrincipalRef
    project: str | None = Field(default=None, description="The project it belongs to.")
    public: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @classmethod
    def of(cls, row: Deployment, live: Live | None) -> DeploymentOut:
        versions = [
            ServedVersion(
                version=served.number,
                weight=weight,
                runtime=str(getattr(served.runtime, "name", "")),
                inputs=[_tensor(t) for t in served.runtime.inputs],
                outputs=[_tensor(t) for t in served.runtime.outputs],
            )
            for served, weight in (live.routes if live else [])
        ]
        return cls(
            id=row.id,
            name=row.name,
            spec=row.spec,
            status=live.status if live else "loading",
            error=live.error if live else None,
            versions=versions,
            owner=PrincipalRef.of(row.owner),
            project=project_name(row),
            public=row.public,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


def _tensor(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape or [])}


class PredictIn(Schema):
    """Inputs as nested lists: one tensor (``inputs: [[...], ...]``) or several by name."""

    inputs: list[Any] | dict[str, list[Any]]
    version: str | None = Field(default=None, description="Pin one of the served versions.")

    model_config = ConfigDict(json_schema_extra={"examples": [{"inputs": [[0.0, 3.0, 16.0, 7.0]]}]})


class PredictOut(Schema):
    deployment: str
    model_version: int | None
    outputs: dict[str, list[Any]]
