"""Shapes shared by every resource."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

from modelyard.db.tables import Principal

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


class Page(Schema, Generic[T]):
    """One page of a list."""

    items: list[T]
    total: int = Field(description="How many items exist in all.")


class GrantIn(Schema):
    principal: str = Field(description="Name of the principal given access.")
    permission: Literal["read", "write"]


class AclBody(Schema):
    """Who may access a resource besides its owner."""

    public: bool = Field(default=False, description="Readable by every key with 'read'.")
    grants: list[GrantIn] = Field(default_factory=list)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"public": False, "grants": [{"principal": "bob", "permission": "read"}]}]
        }
    )
