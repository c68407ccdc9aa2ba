"""Shapes shared by every resource."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from modelyard.auth.acl import AclEntry
from modelyard.db.tables import Principal, Project

T = TypeVar("T")


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[
    datetime,
    AfterValidator(_utc),
    PlainSerializer(lambda v: _utc(v).isoformat(), return_type=str),
]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PrincipalRef(Schema):
    """Who owns or made something."""

    id: str
    name: str

    @classmethod
    def of(cls, principal: Principal) -> PrincipalRef:
        return cls(id=principal.id, name=principal.name)


class InProject(Protocol):
    """A row that belongs to a project."""

    project: Project | None


def project_name(row: InProject) -> str | None:
    """The name of the project ``row`` belongs to."""
    return row.project.name if row.project is not None else None


class Page(Schema, Generic[T]):
    """One page of a list."""

    items: list[T]
    total: int = Field(description="How many items exist in all.")


class GrantIn(Schema):
    """One entry: a principal, or a project (whose members get it; viewers only read)."""

    principal: str | None = Field(default=None, description="Name of the principal given access.")
    project: str | None = Field(default=None, description="Name of the project given access.")
    permission: Literal["read", "write"]

    @model_validator(mode="after")
    def _one_grantee(self) -> GrantIn:
        if (self.principal is None) == (self.project is None):
            raise ValueError("name either a principal or a project")
        return self

    @model_serializer(mode="wrap")
    def _without_absent_grantee(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None}

    def entry(self) -> AclEntry:
        return AclEntry(self.principal, self.permission, self.project)


class AclBody(Schema):
    """Who may access a resource besides its owner."""

    public: bool = Field(default=False, description="Readable by every key with 'read'.")
    grants: list[GrantIn] = Field(default_factory=list)

    def entries(self) -> list[AclEntry]:
        return [g.entry() for g in self.grants]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"public": False, "grants": [{"principal": "bob", "permission": "read"}]}]
        }
    )


class InvalidField(BaseModel):
    """One reason a request was refused: where, and what is wrong there."""

    field: str = Field(
        description="Dotted path of the input, e.g. 'limit' or 'grants.0.principal'."
    )
    message: str


class Problem(BaseModel):
    """An error, as an RFC 9457 problem document (``application/problem+json``)."""

    type: str = Field(
        description="A URI naming the kind of problem.",
        examples=["https://modelyard.dev/problems/not-found"],
    )
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(ge=400, le=599, description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    errors: list[InvalidField] = Field(
        default_factory=list, description="Each invalid input (on 422 for a malformed request)."
    )
    error: str = Field(
        default="", description="The detail again, for Open Inference Protocol clients (/v2)."
    )

    model_config = ConfigDict(extra="allow")
