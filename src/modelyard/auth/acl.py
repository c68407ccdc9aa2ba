"""Reading and replacing the access-control list of one resource.

Data sets, models and deployments share it: :func:`acl_of` reads a resource's list and
:func:`set_acl` replaces it (owner or admin only), sets whether the resource is public and
records the change in the audit log. A service holds one :class:`ResourceAcl`, which finds
the resource by name (checking the caller's access) and reads or replaces its list::

    acl = ResourceAcl(db, "model", Model, registry.get_model)
    acl.set(caller, "digits-mlp", public=False, grants=[AclEntry("ana", "read")])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from modelyard.auth.access import Caller, Permission
from modelyard.auth.audit import record
from modelyard.db.engine import Database
from modelyard.db.tables import Grant, Principal, Project, ProjectGrant
from modelyard.errors import Forbidden, InvalidInput


class Shared(Protocol):
    """A row that has an access-control list (a data set, a model, a deployment)."""

    id: str
    owner_id: str
    public: bool


@dataclass(frozen=True)
class AclEntry:
    """A principal, or a project (whose members get the permission; viewers only read)."""

    principal: str | None
    permission: str
    project: str | None = None


@dataclass(frozen=True)
class Acl:
    public: bool
    grants: list[AclEntry]


def read_grants(session: Session, resource_type: str, resource_id: str) -> list[AclEntry]:
    rows = session.execute(
        select(Principal.name, Grant.permission)
        .join(Principal, Principal.id == Grant.principal_id)
        .where(Grant.resource_type == resource_type, Grant.resource_id == resource_id)
        .order_by(Principal.name)
    ).all()
    projects = session.execute(
        select(Project.name, ProjectGrant.permission)
        .join(Project, Project.id == ProjectGrant.project_id)
        .where(ProjectGrant.resource_type == resource_type, ProjectGrant.resource_id == resource_id)
        .order_by(Project.name)
    ).all()
    return [AclEntry(principal=name, permission=perm) for name, perm in rows] + [
        AclEntry(principal=None, permission=perm, project=name) for name, perm in projects
    ]


def replace_grants(
    session: Session,
    caller: Caller,
    *,
    resource_type: str,
    resource_id: str,
    owner_id: str,
    grants: list[AclEntry],
) -> None:
    """Replace the grants of a resource; only its owner or an admin may do so."""
    if owner_id != caller.principal_id and not caller.acts_as_admin:
        raise Forbidden("only the owner or an admin can change who may access this")
    resolved: dict[str, str] = {}
    to_projects: dict[str, str] = {}
    for entry in grants:
        try:
            permission = Permission(entry.permission)
        except ValueError as exc:
            raise InvalidInput(
                f"grants: permission must be 'read' or 'write', got '{entry.permission}'"
            ) from exc
        if entry.project is not None:
            project = session.scalar(select(Project).where(Project.name == entry.project))
            if project is None:
                raise InvalidInput(f"grants: no project named '{entry.project}'")
            to_projects[project.id] = permission.value
            continue
        principal = session.scalar(select(Principal).where(Principal.name == entry.principal))
        if principal is None:
            raise InvalidInput(f"grants: no principal named '{entry.principal}'")
        resolved[principal.id] = permission.value
    session.execute(
        delete(Grant).where(Grant.resource_type == resource_type, Grant.resource_id == resource_id)
    )
    session.execute(
        delete(ProjectGrant).where(
            ProjectGrant.resource_type == resource_type, ProjectGrant.resource_id == resource_id
        )
    )
    for project_id, permission_value in to_projects.items():
        session.add(
            ProjectGrant(
                resource_type=resource_type,
                resource_id=resource_id,
                project_id=project_id,
                permission=permission_value,
            )
        )
    for principal_id, permission_value in resolved.items():
        session.add(
            Grant(
                resource_type=resource_type,
                resource_id=resource_id,
                principal_id=principal_id,
                permission=permission_value,
            )
        )


def acl_of(session: Session, resource_type: str, row: Shared) -> Acl:
    """The access-control list of ``row``."""
    return Acl(public=row.public, grants=read_grants(session, resource_type, row.id))


def set_acl(
    session: Session,
    caller: Caller,
    resource_type: str,
    row: Shared,
    *,
    public: bool,
    grants: list[AclEntry],
    name: str,
) -> None:
    """Replace ``row``'s grants and public flag (``row`` attached to ``session``), audited as
    ``<resource_type>.acl`` on ``<resource_type>:<name>``."""
    replace_grants(
        session,
        caller,
        resource_type=resource_type,
        resource_id=row.id,
        owner_id=row.owner_id,
        grants=grants,
    )
    row.public = public
    record(session, caller, f"{resource_type}.acl", f"{resource_type}:{name}", {"public": public})


Row = TypeVar("Row", bound=Shared)


class ResourceAcl(Generic[Row]):
    """Reading and replacing the access-control lists of one kind of resource.

    ``find(caller, name, permission)`` is the owning service's lookup: it raises NotFound
    (or Forbidden) unless the caller may use the resource so; reading a list needs read
    access, replacing it write access (and ownership, or admin). ``on_change(name)`` runs
    after a list was replaced, for services that remember access answers.
    """

    def __init__(
        self,
        db: Database,
        resource_type: str,
        table: type[Row],
        find: Callable[[Caller, str, Permission], Row],
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self._db = db
        self._type = resource_type
        self._table = table
        self._find = find
        self._on_change = on_change

    def get(self, caller: Caller, name: str) -> Acl:
        """Who besides the owner may use resource ``name``."""
        row = self._find(caller, name, Permission.READ)
        with self._db.session() as session:
            return acl_of(session, self._type, row)

    def set(self, caller: Caller, name: str, public: bool, grants: list[AclEntry]) -> Acl:
        """Replace the list of resource ``name`` and whether it is public; the new list."""
        row = self._find(caller, name, Permission.WRITE)
        with self._db.session() as session:
            attached = session.get_one(self._table, row.id)
            set_acl(session, caller, self._type, attached, public=public, grants=grants, name=name)
        if self._on_change is not None:
            self._on_change(name)
        return self.get(caller, name)
