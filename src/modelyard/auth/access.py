"""Who is calling, what their key allows, and what they may see.

Resources are private to their owner by default. An owner (or an admin) may share one with
named principals for ``read`` or ``write``, or make it readable by everyone (``public``).
A caller who may not read a resource is told it does not exist (404), so names of private
resources do not leak through errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Any, Protocol

from sqlalchemy import ColumnElement, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from modelyard.db.tables import Grant
from modelyard.errors import Forbidden, NotFound


class Scope(StrEnum):
    """What a key may do.

    ``keys`` lets a key manage its own principal's keys (never with more scopes or a later
    expiry than itself); ``metrics`` lets it read every deployment's series on ``/metrics``.
    ``write`` implies ``read``, and ``admin`` every other scope.
    """

    READ = "read"
    WRITE = "write"
    INFER = "infer"
    KEYS = "keys"
    METRICS = "metrics"
    ADMIN = "admin"


def expand_scopes(scopes: frozenset[str]) -> frozenset[Scope]:
    """The scopes a key's listed ``scopes`` amount to (``write`` brings ``read``)."""
    found = {Scope(s) for s in scopes if s in Scope._value2member_map_}
    if Scope.WRITE in found:
        found.add(Scope.READ)
    return frozenset(found)


class Permission(StrEnum):
    """What a grant allows on one resource."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Caller:
    """The authenticated principal behind a request and the scopes of the key it used."""

    principal_id: str
    name: str
    is_admin: bool
    scopes: frozenset[str]
    key_id: str
    key_expires_at: datetime | None = None

    def has(self, scope: Scope) -> bool:
        """Whether the key carries ``scope`` (an admin key of an admin carries them all)."""
        return scope in self.granted

    @cached_property
    def granted(self) -> frozenset[Scope]:
        """Every scope the key amounts to (all of them for an admin's admin key)."""
        if self.acts_as_admin:
            return frozenset(Scope)
        return expand_scopes(self.scopes) - {Scope.ADMIN}

    def require(self, scope: Scope) -> None:
        """Raise 403 unless the key carries ``scope`` (an admin key carries them all)."""
        if not self.has(scope):
            raise Forbidden(f"this API key lacks the '{scope.value}' scope")

    def require_admin(self) -> None:
        if not (self.is_admin and Scope.ADMIN.value in self.scopes):
            raise Forbidden("this call needs an admin key")

    @property
    def acts_as_admin(self) -> bool:
        return self.is_admin and Scope.ADMIN.value in self.scopes


def may_access(
    session: Session,
    caller: Caller,
    *,
    resource_type: str,
    resource_id: str,
    owner_id: str,
    public: bool,
    permission: Permission,
) -> bool:
    """Whether ``caller`` may read (or write) the resource."""
    if caller.acts_as_admin or owner_id == caller.principal_id:
        return True
    if permission is Permission.READ and public:
        return True
    wanted = [Permission.WRITE.value]
    if permission is Permission.READ:
        wanted.append(Permission.READ.value)
    grant = session.scalar(
        select(Grant.id).where(
            Grant.resource_type == resource_type,
            Grant.resource_id == resource_id,
            Grant.principal_id == caller.principal_id,
            Grant.permission.in_(wanted),
        )
    )
    return grant is not None


def visible_clause(
    caller: Caller,
    resource_type: str,
    id_col: InstrumentedAttribute[str],
    owner_col: InstrumentedAttribute[str],
    public_col: InstrumentedAttribute[bool],
) -> ColumnElement[bool]:
    """A SQL condition selecting the rows of a resource table that ``caller`` may read."""
    if caller.acts_as_admin:
        return true()
    shared = select(Grant.resource_id).where(
        Grant.resource_type == resource_type, Grant.principal_id == caller.principal_id
    )
    return or_(owner_col == caller.principal_id, public_col.is_(True), id_col.in_(shared))


class OwnedRow(Protocol):
    """A resource row with an owner and a public flag."""

    id: str
    owner_id: str
    public: bool


def ensure_access(
    session: Session,
    caller: Caller,
    resource_type: str,
    row: OwnedRow,
    permission: Permission,
    label: str,
) -> None:
    """Raise 404 if the caller may not see the resource, 403 if it may see but not write."""
    common: dict[str, Any] = {
        "resource_type": resource_type,
        "resource_id": row.id,
        "owner_id": row.owner_id,
        "public": row.public,
    }
    if not may_access(session, caller, permission=Permission.READ, **common):
        raise NotFound(f"no {label}")
    if permission is Permission.WRITE and not may_access(
        session, caller, permission=Permission.WRITE, **common
    ):
        raise Forbidden(f"you may read but not change {label}")
