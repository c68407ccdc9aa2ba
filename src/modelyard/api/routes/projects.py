"""Projects, their members, and the audit log."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BeforeValidator

from modelyard.api.deps import CallerDep, Limit, Offset, PlatformDep
from modelyard.api.schemas.common import Page
from modelyard.api.schemas.projects import (
    AuditOut,
    MemberSet,
    ProjectCreate,
    ProjectOut,
    ProjectUpdate,
)
from modelyard.auth.audit import AuditQuery, read_audit

router = APIRouter(prefix="/api/v1", tags=["projects"])

_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _rfc3339(value: object) -> object:
    """A date-time as the document declares it (RFC 3339, with its offset), nothing looser."""
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("use an RFC 3339 date-time such as 2026-12-01T00:00:00Z")
    return value


Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339)]


@router.post("/projects", status_code=201, response_model=ProjectOut, summary="Create a project")
def create_project(body: ProjectCreate, platform: PlatformDep, caller: CallerDep) -> ProjectOut:
    return ProjectOut.of(platform.projects.create(caller, body.name, body.description))


@router.get("/projects", response_model=Page[ProjectOut], summary="The caller's projects")
def list_projects(
    platform: PlatformDep, caller: CallerDep, limit: Limit = 100, offset: Offset = 0
) -> Page[ProjectOut]:
    views = platform.projects.list(caller)
    return Page[ProjectOut](
        items=[ProjectOut.of(v) for v in views[offset : offset + limit]], total=len(views)
    )


@router.get("/projects/{project}", response_model=ProjectOut, summary="A project and its members")
def get_project(project: str, platform: PlatformDep, caller: CallerDep) -> ProjectOut:
    return ProjectOut.of(platform.projects.get(caller, project))


@router.patch("/projects/{project}", response_model=ProjectOut, summary="Change a project")
def update_project(
    project: str, body: ProjectUpdate, platform: PlatformDep, caller: CallerDep
) -> ProjectOut:
    return ProjectOut.of(platform.projects.update(caller, project, body.description))


@router.delete(
    "/projects/{project}",
    status_code=204,
    response_class=Response,
    summary="Delete an empty project (and the keys bound to it)",
)
def delete_project(project: str, platform: PlatformDep, caller: CallerDep) -> Response:
    platform.projects.delete(caller, project)
    return Response(status_code=204)


@router.put(
    "/projects/{project}/members/{principal}",
    response_model=ProjectOut,
    summary="Add a member or change its role",
)
def set_member(
    project: str, principal: str, body: MemberSet, platform: PlatformDep, caller: CallerDep
) -> ProjectOut:
    return ProjectOut.of(platform.projects.set_member(caller, project, principal, body.role))


@router.delete(
    "/projects/{project}/members/{principal}",
    status_code=204,
    response_class=Response,
    summary="Remove a member (or leave)",
)
def remove_member(
    project: str, principal: str, platform: PlatformDep, caller: CallerDep
) -> Response:
    platform.projects.remove_member(caller, project, principal)
    return Response(status_code=204)


@router.get("/audit", response_model=Page[AuditOut], summary="The audit log")
def audit(
    platform: PlatformDep,
    caller: CallerDep,
    actor: Annotated[str | None, Query(description="A principal's name.")] = None,
    action: Annotated[
        str | None, Query(description="An action, or a prefix ending in '.' (project.).")
    ] = None,
    resource: Annotated[
        str | None, Query(description="A resource (model:digits), or a prefix ending in ':'.")
    ] = None,
    project: Annotated[
        str | None, Query(description="A project's name (required unless the key is admin).")
    ] = None,
    start: Annotated[
        Rfc3339 | None, Query(description="From (RFC 3339, e.g. 2026-12-01T00:00:00Z).")
    ] = None,
    end: Annotated[Rfc3339 | None, Query(description="Until, excluded (RFC 3339).")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[AuditOut]:
    query = AuditQuery(
        actor=actor, action=action, resource=resource, project=project, start=start, end=end
    )
    with platform.db.session() as session:
        rows, total = read_audit(session, caller, query, limit, offset)
    return Page[AuditOut](
        items=[
            AuditOut(
                id=r.id,
                at=r.at,
                principal=r.principal,
                project=r.project,
                action=r.action,
                resource=r.resource,
                detail=r.detail,
            )
            for r in rows
        ],
        total=total,
    )
