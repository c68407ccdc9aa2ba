"""Bodies and replies of the project routes."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from pydantic import ConfigDict, Field

from modelyard.api.schemas.common import Schema, UtcDatetime
from modelyard.auth.projects import ProjectView

RoleName = Literal["owner", "member", "viewer"]


class ProjectCreate(Schema):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="The project's name: letters, digits, '.', '_' or '-'.",
    )
    description: str = Field(default="", max_length=4000)

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "vision-team", "description": "image models"}]}
    )


class ProjectUpdate(Schema):
    description: str = Field(max_length=4000)


class MemberSet(Schema):
    role: RoleName = Field(
        description="owner (manages the project), member (changes its resources) or viewer."
    )

    model_config = ConfigDict(json_schema_extra={"examples": [{"role": "member"}]})


class MemberOut(Schema):
    principal: str
    role: RoleName


class ProjectOut(Schema):
    id: str
    name: str
    description: str
    personal: bool = Field(description="Whether this is a principal's personal project.")
    role: RoleName | None = Field(description="The caller's role in the project.")
    members: list[MemberOut]
    created_at: UtcDatetime

    @classmethod
    def of(cls, view: ProjectView) -> ProjectOut:
        return cls.model_validate(asdict(view))


class AuditOut(Schema):
    id: int
    at: UtcDatetime
    principal: str | None
    project: str | None
    action: str
    resource: str
    detail: dict[str, Any]
