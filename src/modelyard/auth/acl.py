"""Reading and replacing the access-control list of one resource.

Data sets, models and deployments share it: :func:`acl_of` reads a resource's list and
:func:`set_acl` replaces it (owner or admin only), sets whether the resource is public and
records the change in the audit log::

    with db.session() as session:
        set_acl(session, caller, "model", row, public=False, grants=[AclEntry("ana", "read")],
                name="digits-mlp")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from modelyard.auth.access import Caller, Permission
from modelyard.auth.audit import record
from modelyard.db.tables import Grant, Principal
from modelyard.errors import Forbidden, InvalidInput


class Shared(Protocol):
    """A row that has an access-control list (a data set, a model, a deployment)."""

    id: str
    owner_id: str
    public: bool


@dataclass(frozen=True)
class AclEntry:
    principal: str
    permission: str


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
    return [AclEntry(principal=name, permission=perm) for name, perm in rows]


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
    for entry in grants:
        try:
            permission = Permission(entry.permission)
        except ValueError as exc:
            raise InvalidInput(
                f"grants: permission must be 'read' or 'write', got '{entry.permission}'"
            ) from exc
        principal = session.scalar(select(Principal).where(Principal.name == entry.principal))
        if principal is None:
            raise InvalidInput(f"grants: no principal named '{entry.principal}'")
        resolved[principal.id] = permission.value
    session.execute(
        delete(Grant).where(Grant.resource_type == resource_type, Grant.resource_id == resource_id)
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
