"""Data sets."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from modelyard.api.schemas.common import PrincipalRef, Schema, UtcDatetime, project_name
from modelyard.db.tables import Dataset


class DatasetOut(Schema):
    id: str
    name: str
    description: str
    format: str = Field(examples=["csv"])
    kind: str = Field(description="'table' or 'arrays'.")
    schema_: dict[str, Any] = Field(alias="schema", serialization_alias="schema")
    num_rows: int
    label: str | None
    sha256: str
    size: int
    owner: PrincipalRef
    project: str | None = Field(default=None, description="The project it belongs to.")
    public: bool
    created_at: UtcDatetime

    @classmethod
    def of(cls, row: Dataset) -> DatasetOut:
        return cls.model_validate(
            {
                "id": row.id,
                "name": row.name,
                "description": row.description,
                "format": row.format,
                "kind": row.kind,
                "schema": row.schema,
                "num_rows": row.num_rows,
                "label": row.label,
                "sha256": row.sha256,
                "size": row.size,
                "owner": PrincipalRef.of(row.owner),
                "project": project_name(row),
                "public": row.public,
                "created_at": row.created_at,
            }
        )
