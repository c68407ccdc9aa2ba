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

from modelyard.db.tables import Grant, ProjectGrant
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


class Role(StrEnum):
    """A principal's role in a project: owners manage it, members change its resources,
    viewers read them."""

    OWNER = "owner"
    MEMBER = "member"
    VIEWER = "viewer"


WRITERS = frozenset({Role.OWNER, Role.MEMBER})


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
    # The project the key works in: the one it is bound to, else the principal's personal one.
    project_id: str | None = None
    # The project the key is bound to (it then sees and changes nothing outside it but what
    # is public), or None.
    key_project_id: str | None = None
    # The principal's roles: (project id, "owner" | "member" | "viewer") pairs.
    project_roles: tuple[tuple[str, str], ...] = ()

    def role(self, project_id: str | None) -> Role | None:
        """The principal's role in ``project_id`` (None: not a member)."""
        for pid, role in self.project_roles:
            if pid == project_id:
                return Role(role)
        return None

    @cached_property
    def readable_projects(self) -> tuple[str, ...]:
        """The projects whose resources the key may read through membership."""
        if self.key_project_id is not None:
            return (self.key_project_id,) if self.role(self.key_project_id) else ()
        return tuple(pid for pid, _ in self.project_roles)

    @cached_property
    def writable_projects(self) -> tuple[str, ...]:
        """The projects whose resources the key may change through membership."""
        return tuple(pid for pid in self.readable_projects if self.role(pid) in WRITERS)

    def has(self, scope: Scope) -> bool:
        """Whether the key carries ``scope`` (an admin key of an admin carries them all)."""
        return scope in self.granted

    @cached_property
    def granted(self) -> frozenset[Scope]:
        """Every scope the key amounts to (all of them for an admin's admin key)."""
        if self.acts_as_admin:
            return frozenset(Scope)
        granted = expand_scopes(self.scopes) - {Scope.ADMIN}
        if self.key_project_id is not None and self.role(self.key_project_id) not in WRITERS:
            # A key bound to a project where its principal only views (or is no longer a
            # member) changes nothing.
            granted -= {Scope.WRITE}
        return granted

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
    project_id: str | None = None,
) -> bool:
    """Whether ``caller`` may read (or write) the resource.

    A key bound to a project reaches only that project's resources (and public ones, to
    read); otherwise the owner, members of the resource's project (viewers to read), and
    principals or projects the resource is shared with may reach it.
    """
    if caller.acts_as_admin:
        return True
    if permission is Permission.READ and public:
        return True
    reach = caller.readable_projects if permission is Permission.READ else caller.writable_projects
    if project_id is not None and project_id in reach:
        return True
    if caller.key_project_id is not None:
        # A bound key reaches nothing outside its project but public resources.
        return False
    if owner_id == caller.principal_id:
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
    if grant is not None:
        return True
    if not reach:
        return False
    shared = session.scalar(
        select(ProjectGrant.project_id).where(
            ProjectGrant.resource_type == resource_type,
            ProjectGrant.resource_id == resource_id,
            ProjectGrant.project_id.in_(reach),
            ProjectGrant.permission.in_(wanted),
        )
    )
    return shared is not None


def visible_clause(
    caller: Caller,
    resource_type: str,
    id_col: InstrumentedAttribute[str],
    owner_col: InstrumentedAttribute[str],
    public_col: InstrumentedAttribute[bool],
    project_col: InstrumentedAttribute[str | None],
) -> ColumnElement[bool]:
    """A SQL condition selecting the rows of a resource table that ``caller`` may read."""
    if caller.acts_as_admin:
        return true()
    conditions = [member_clause(caller, owner_col, project_col), public_col.is_(True)]
    if caller.key_project_id is None:
        shared = select(Grant.resource_id).where(
            Grant.resource_type == resource_type, Grant.principal_id == caller.principal_id
        )
        conditions.append(id_col.in_(shared))
        if caller.readable_projects:
            shared_with_projects = select(ProjectGrant.resource_id).where(
                ProjectGrant.resource_type == resource_type,
                ProjectGrant.project_id.in_(caller.readable_projects),
            )
            conditions.append(id_col.in_(shared_with_projects))
    return or_(*conditions)


def may_reach(
    caller: Caller, owner_id: str, project_id: str | None, permission: Permission
) -> bool:
    """Whether ``caller`` may read (or change) a resource that is never shared or public, such
    as a job: its owner, an admin, or a member of its project (a viewer only reads)."""
    if caller.acts_as_admin:
        return True
    reach = caller.readable_projects if permission is Permission.READ else caller.writable_projects
    if project_id is not None and project_id in reach:
        return True
    return caller.key_project_id is None and owner_id == caller.principal_id


def member_clause(
    caller: Caller,
    owner_col: InstrumentedAttribute[str],
    project_col: InstrumentedAttribute[str | None],
) -> ColumnElement[bool]:
    """A SQL condition selecting the rows :func:`may_reach` lets ``caller`` read."""
    if caller.acts_as_admin:
        return true()
    member_of = project_col.in_(caller.readable_projects)
    if caller.key_project_id is not None:
        return member_of
    return or_(owner_col == caller.principal_id, member_of)


class OwnedRow(Protocol):
    """A resource row with an owner and a public flag."""

    id: str
    owner_id: str
    public: bool
    project_id: str | None


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
        "project_id": row.project_id,
    }
    if not may_access(session, caller, permission=Permission.READ, **common):
        raise NotFound(f"no {label}")
    if permission is Permission.WRITE and not may_access(
        session, caller, permission=Permission.WRITE, **common
    ):
        raise Forbidden(f"you may read but not change {label}")
