"""``client.projects``: projects, their members, and the audit log."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelyard.client._http import HTTP, seg
from modelyard.client._types import JSONObject, _created, _dt


@dataclass(frozen=True, kw_only=True)
class Member:
    """A principal's role in a project: ``owner``, ``member`` or ``viewer``."""

    principal: str
    role: str


@dataclass(frozen=True, kw_only=True)
class Project:
    """A team's space: its resources, members and the caller's own ``role`` there."""

    id: str
    name: str
    description: str
    personal: bool
    role: str | None
    members: tuple[Member, ...]
    created_at: datetime
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Project:
        """Build from the API's Project object."""
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            description=str(data.get("description") or ""),
            personal=bool(data.get("personal", False)),
            role=data.get("role"),
            members=tuple(
                Member(principal=str(m["principal"]), role=str(m["role"]))
                for m in data.get("members") or ()
            ),
            created_at=_created(data),
            raw=dict(data),
        )


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """One change: who (``principal``) did what (``action``) to which ``resource``, when."""

    id: int
    at: datetime
    principal: str | None
    project: str | None
    action: str
    resource: str
    detail: JSONObject

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEntry:
        at = _dt(data.get("at"))
        if at is None:
            raise KeyError("at")
        return cls(
            id=int(data["id"]),
            at=at,
            principal=data.get("principal"),
            project=data.get("project"),
            action=str(data["action"]),
            resource=str(data["resource"]),
            detail=dict(data.get("detail") or {}),
        )


def _rfc3339(moment: datetime | None) -> str | None:
    """``moment`` as the server reads it; without a time zone it is taken as UTC."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


class Projects:
    """Create projects, manage their members, read the audit log.

    Example::

        client.projects.create("vision", description="image models")
        client.projects.set_member("vision", "ana", "member")
        key = client.keys.create("ci", ["read", "write"], project="vision")
    """

    def __init__(self, http: HTTP) -> None:
        self._http = http

    def create(self, name: str, description: str = "") -> Project:
        """A new project, owned by the caller."""
        body = {"name": name, "description": description}
        return Project.from_json(self._http.object("POST", "/api/v1/projects", json=body))

    def list(self) -> list[Project]:
        """The projects the caller belongs to (every project, for an admin key)."""
        return [Project.from_json(p) for p in self._http.paginate("/api/v1/projects")]

    def get(self, name: str) -> Project:
        return Project.from_json(self._http.object("GET", f"/api/v1/projects/{seg(name)}"))

    def update(self, name: str, description: str) -> Project:
        path = f"/api/v1/projects/{seg(name)}"
        return Project.from_json(
            self._http.object("PATCH", path, json={"description": description})
        )

    def delete(self, name: str) -> None:
        """Delete an empty project; the keys bound to it go with it."""
        self._http.send("DELETE", f"/api/v1/projects/{seg(name)}")

    def set_member(self, name: str, principal: str, role: str) -> Project:
        """Add ``principal`` with ``role`` (``owner``, ``member``, ``viewer``) or change it."""
        path = f"/api/v1/projects/{seg(name)}/members/{seg(principal)}"
        return Project.from_json(self._http.object("PUT", path, json={"role": role}))

    def remove_member(self, name: str, principal: str) -> None:
        self._http.send("DELETE", f"/api/v1/projects/{seg(name)}/members/{seg(principal)}")

    def audit(
        self,
        *,
        project: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        resource: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> builtins.list[AuditEntry]:
        """Audit entries, newest first: every one for an admin key, else those of the
        projects the caller owns. ``action`` and ``resource`` ending in ``.`` or ``:`` match
        as prefixes (``"project."``, ``"model:"``); ``start`` and ``end`` without a time zone
        are taken as UTC."""
        params: dict[str, Any] = {
            k: v
            for k, v in {
                "project": project,
                "actor": actor,
                "action": action,
                "resource": resource,
                "start": _rfc3339(start),
                "end": _rfc3339(end),
            }.items()
            if v is not None
        }
        return [AuditEntry.from_json(e) for e in self._http.paginate("/api/v1/audit", params)]
