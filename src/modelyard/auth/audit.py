"""The audit trail: one row per change, written in the same transaction as the change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from modelyard.auth.access import Caller
from modelyard.db.tables import AuditEntry, Principal, Project, ProjectMember
from modelyard.errors import Forbidden, NotFound


def record(
    session: Session,
    caller: Caller | None,
    action: str,
    resource: str,
    detail: dict[str, Any] | None = None,
    *,
    project_id: str | None = None,
) -> None:
    """Append an audit entry (committed or rolled back with the surrounding change), in
    ``project_id`` or else the project the caller works in."""
    session.add(
        AuditEntry(
            principal_id=caller.principal_id if caller else None,
            project_id=project_id or (caller.project_id if caller else None),
            action=action,
            resource=resource,
            detail=detail or {},
        )
    )


@dataclass(frozen=True)
class AuditQuery:
    """Filters of the audit log; every one optional."""

    actor: str | None = None  # a principal's name
    action: str | None = None  # an action, or a prefix ending in '.' ("project.")
    resource: str | None = None  # "model:digits" or a prefix ending in ':' ("model:")
    project: str | None = None  # a project's name
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    principal: str | None
    project: str | None
    action: str
    resource: str
    detail: dict[str, Any]


def read_audit(
    session: Session, caller: Caller, query: AuditQuery, limit: int, offset: int
) -> tuple[list[AuditRow], int]:
    """Audit entries matching ``query``, newest first, and how many match in all.

    An admin key reads every entry; any other key reads the entries of the projects its
    principal owns (only the key's own project, for a key bound to one).
    """
    actor = aliased(Principal)
    where: list[ColumnElement[bool]] = []
    named = None
    if query.project is not None:
        named = session.scalar(select(Project.id).where(Project.name == query.project))
        if named is None and caller.acts_as_admin:
            raise NotFound(f"no project named '{query.project}'")
    if not caller.acts_as_admin:
        owned = select(ProjectMember.project_id).where(
            ProjectMember.principal_id == caller.principal_id, ProjectMember.role == "owner"
        )
        if caller.key_project_id is not None:
            owned = owned.where(ProjectMember.project_id == caller.key_project_id)
        mine = set(session.scalars(owned))
        if query.project is not None and named not in mine:
            raise Forbidden("the audit log of a project is for its owners and admins")
        where.append(AuditEntry.project_id.in_(mine))
    if named is not None:
        where.append(AuditEntry.project_id == named)
    if query.actor is not None:
        where.append(actor.name == query.actor)
    if query.action is not None:
        where.append(_match(AuditEntry.action, query.action, "."))
    if query.resource is not None:
        where.append(_match(AuditEntry.resource, query.resource, ":"))
    if query.start is not None:
        where.append(AuditEntry.at >= query.start)
    if query.end is not None:
        where.append(AuditEntry.at < query.end)
    base = (
        select(AuditEntry, actor.name, Project.name)
        .outerjoin(actor, actor.id == AuditEntry.principal_id)
        .outerjoin(Project, Project.id == AuditEntry.project_id)
        .where(*where)
    )
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.execute(base.order_by(AuditEntry.id.desc()).limit(limit).offset(offset)).all()
    return [
        AuditRow(
            id=entry.id,
            at=entry.at,
            principal=principal,
            project=project_name,
            action=entry.action,
            resource=entry.resource,
            detail=dict(entry.detail or {}),
        )
        for entry, principal, project_name in rows
    ], total


def _match(column: InstrumentedAttribute[str], value: str, separator: str) -> ColumnElement[bool]:
    """Equal to ``value``, or starting with it when it ends in ``separator``."""
    if value.endswith(separator):
        escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return column.like(f"{escaped}%", escape="\\")
    return column == value
