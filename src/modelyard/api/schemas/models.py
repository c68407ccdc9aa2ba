"""Models, versions and aliases."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from modelyard.api.schemas.common import PrincipalRef, Schema, UtcDatetime, project_name
from modelyard.db.tables import Model, ModelVersion
from modelyard.naming import MAX_VERSION


class ModelCreate(Schema):
    name: str = Field(description="Unique on the server.")
    task: str | None = Field(default=None, examples=["classification"])
    description: str = ""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "digits-mlp", "task": "classification"}]}
    )


class ModelUpdate(Schema):
    task: str | None = None
    description: str | None = None


class ModelOut(Schema):
    id: str
    name: str
    task: str | None
    description: str
    owner: PrincipalRef
    project: str | None = Field(default=None, description="The project it belongs to.")
    public: bool
    latest_version: int | None
    aliases: dict[str, int]
    created_at: UtcDatetime

    @classmethod
    def of(cls, row: Model, latest: int | None, aliases: dict[str, int]) -> ModelOut:
        return cls(
            id=row.id,
            name=row.name,
            task=row.task,
            description=row.description,
            owner=PrincipalRef.of(row.owner),
            project=project_name(row),
            public=row.public,
            latest_version=latest,
            aliases=aliases,
            created_at=row.created_at,
        )


class Lineage(Schema):
    dataset: str | None = Field(description="Id of the data set it was trained on.")
    job: str | None = Field(description="Id of the job that made it.")
    parent_version: int | None = Field(description="The version it was made from.")
    parent_model: str | None = Field(
        description="The model of the parent version: this model unless another is named."
    )


class VersionPrivacy(Schema):
    """The differential-privacy guarantee of a version trained privately (DP-SGD)."""

    epsilon: float = Field(description="ε spent by the run that trained it.")
    delta: float = Field(description="δ of the (ε, δ) guarantee.")
    noise_multiplier: float
    max_grad_norm: float = Field(description="Each example's gradient was clipped to this.")
    accountant: str = Field(description="prv or rdp.")
    sample_rate: float | None = None
    steps: int | None = None
    target_epsilon: float | None = None
    sampling: str | None = Field(default=None, description="poisson")
    clipping: str | None = Field(default=None, description="per_example")


class VersionOut(Schema):
    id: str
    model: str
    version: int
    format: str
    sha256: str
    size: int
    spec: dict[str, Any] | None
    signature: dict[str, Any] | None
    metrics: dict[str, Any]
    params: dict[str, Any]
    description: str
    lineage: Lineage
    created_by: PrincipalRef
    created_at: UtcDatetime
    privacy: VersionPrivacy | None = Field(
        default=None, description="Set when the version was trained with differential privacy."
    )

    @classmethod
    def of(cls, row: ModelVersion, model_name: str) -> VersionOut:
        return cls(
            id=row.id,
            model=model_name,
            version=row.version,
            format=row.format,
            sha256=row.sha256,
            size=row.size,
            spec=row.spec,
            signature=row.signature,
            metrics=row.metrics,
            params=row.params,
            privacy=_privacy(row.params),
            description=row.description,
            lineage=Lineage(
                dataset=row.dataset_id,
                job=row.job_id,
                parent_version=row.parent_version,
                parent_model=row.parent_model or (model_name if row.parent_version else None),
            ),
            created_by=PrincipalRef.of(row.created_by),
            created_at=row.created_at,
        )


class AliasSet(Schema):
    version: int = Field(ge=1, le=MAX_VERSION)
    force: bool = Field(
        default=False,
        description="Move the alias even if deployments that follow it would then serve "
        "other tensors (otherwise 409).",
    )


class AliasOut(Schema):
    alias: str
    version: int


def _privacy(params: dict[str, Any] | None) -> VersionPrivacy | None:
    block = (params or {}).get("privacy")
    if not isinstance(block, dict):
        return None
    try:
        return VersionPrivacy.model_validate(block)
    except ValueError:
        return None
