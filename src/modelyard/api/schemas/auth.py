"""Principals and API keys."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from modelyard.api.schemas.common import PrincipalRef, Schema, UtcDatetime
from modelyard.db.tables import ApiKey


class PrincipalCreate(Schema):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
    kind: Literal["user", "service"] = "user"
    is_admin: bool = False

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "alice", "kind": "user"}]})


class PrincipalOut(Schema):
    id: str
    name: str
    kind: str
    is_admin: bool
    created_at: UtcDatetime


class KeyCreate(Schema):
    name: str = Field(min_length=1, max_length=128)
    scopes: list[Literal["read", "write", "infer", "keys", "metrics", "admin"]] = Field(
        min_length=1,
        description=(
            "What the key may do: read, write, infer, keys (manage its principal's keys), "
            "metrics (every deployment on /metrics), admin (everything)."
        ),
    )
    expires_at: UtcDatetime | None = Field(default=None, description="When the key stops working.")
    principal: str | None = Field(
        default=None, description="Issue the key for this principal (admins only)."
    )
    project: str | None = Field(
        default=None,
        description=(
            "Bind the key to this project (its principal must be a member): it then sees and "
            "changes only that project's resources, and what it creates goes there."
        ),
    )

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "laptop", "scopes": ["read", "write"]}]}
    )


class KeyOut(Schema):
    id: str
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    scopes: list[str]
    principal: PrincipalRef
    project: str | None = Field(description="The project the key is bound to, if any.")
    expires_at: UtcDatetime | None
    revoked_at: UtcDatetime | None
    last_used_at: UtcDatetime | None
    created_at: UtcDatetime

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            scopes=list(key.scopes),
            principal=PrincipalRef.of(key.principal),
            project=key.project.name if key.project else None,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            last_used_at=key.last_used_at,
            created_at=key.created_at,
        )


class KeyCreated(KeyOut):
    key: str = Field(description="The secret: shown once, store it now.")


class WhoAmI(Schema):
    principal: PrincipalOut
    key: KeyOut
