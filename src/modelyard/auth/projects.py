"""Projects: a team's space, its members and their roles.

A project holds data sets, models, jobs and deployments. Its members have a role:
``owner`` (manages the project and its members), ``member`` (changes its resources) or
``viewer`` (reads them). Every principal has a personal project, created with it, where its
work goes unless it uses a key bound to another project::

    projects = ProjectService(db, on_change=auth.forget_principal)
    team = projects.create(caller, "vision-team", description="image models")
    projects.set_member(caller, "vision-team", "ana", Role.VIEWER)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.auth.access import Caller, Role, Scope
from modelyard.auth.audit import record
from modelyard.db.engine import Database
from modelyard.db.tables import (
    ApiKey,
    Dataset,
    Deployment,
    Job,
    Model,
    Principal,
    Project,
    ProjectMember,
)
from modelyard.errors import Conflict, Forbidden, InvalidInput, NotFound
from modelyard.naming import check_name

RESOURCE_TABLES: tuple[type[Dataset] | type[Model] | type[Job] | type[Deployment], ...] = (
    Dataset,
    Model,
    Job,
    Deployment,
)


@dataclass(frozen=True)
class MemberView:
    principal: str
    role: str


@dataclass(frozen=True)
class ProjectView:
    """A project as its members see it."""

    id: str
    name: str
    description: str
    personal: bool
    role: str | None
    members: list[MemberView]
    created_at: datetime


def principal_roles(session: Session, principal_id: str) -> tuple[tuple[str, str], ...]:
    """``(project id, role)`` for every project ``principal_id`` belongs to."""
    rows = session.execute(
        select(ProjectMember.project_id, ProjectMember.role).where(
            ProjectMember.principal_id == principal_id
        )
    ).all()
    return tuple((pid, role) for pid, role in rows)


def personal_project_id(session: Session, principal_id: str) -> str | None:
    return session.scalar(select(Project.id).where(Project.personal_of == principal_id))


def create_personal_project(session: Session, principal: Principal) -> Project:
    """The personal project of a principal just added to ``session`` (flushed), owned by it.

    It is named after the principal, or after it with ``-personal`` (and a number) when a
    project already has that name.
    """
    name = principal.name
    n = 1
    while session.scalar(select(Project.id).where(Project.name == name)) is not None:
        name = f"{principal.name}-personal" if n == 1 else f"{principal.name}-personal-{n}"
        n += 1
    project = Project(
        name=name, description=f"{principal.name}'s personal project", personal_of=principal.id
    )
    session.add(project)
    session.flush()
    session.add(ProjectMember(project_id=project.id, principal_id=principal.id, role=Role.OWNER))
    session.flush()
    return project


def project_by_name(session: Session, caller: Caller, name: str) -> Project:
    """The project named ``name`` (or with the id ``name``) if ``caller`` is a member (or an
    admin); 404 otherwise, so the names of other teams' projects do not leak."""
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        project = session.get(Project, name)
    if project is None or not (caller.acts_as_admin or role_of(session, caller, project.id)):
        raise NotFound(f"no project named '{name}'")
    return project


def role_of(session: Session, caller: Caller, project_id: str) -> Role | None:
    """The calling principal's role in ``project_id``, read from the database (not from the
    key's remembered roles, so a change of membership counts at once)."""
    role = session.scalar(
        select(ProjectMember.role).where(
            ProjectMember.project_id == project_id,
            ProjectMember.principal_id == caller.principal_id,
        )
    )
    return Role(role) if role is not None else None


def require_owner(session: Session, caller: Caller, project: Project) -> None:
    """403 unless ``caller`` owns ``project`` or acts as an admin."""
    if caller.acts_as_admin:
        return
    if caller.key_project_id not in (None, project.id):
        raise Forbidden("this API key is bound to another project")
    if role_of(session, caller, project.id) is not Role.OWNER:
        raise Forbidden(f"only an owner of project '{project.name}' or an admin can do this")


def _parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError as exc:
        raise InvalidInput(f"role must be one of {[r.value for r in Role]}, got '{value}'") from exc


class ProjectService:
    """Create, list, change and delete projects and their members."""

    def __init__(
        self, db: Database, on_change: Callable[[str], None] = lambda _principal_id: None
    ) -> None:
        self._db = db
        # Told the id of each principal whose memberships change, so that remembered keys
        # of that principal are looked up again.
        self._on_change = on_change

    def _view(self, session: Session, caller: Caller, project: Project) -> ProjectView:
        members = session.execute(
            select(Principal.name, ProjectMember.role)
            .join(Principal, Principal.id == ProjectMember.principal_id)
            .where(ProjectMember.project_id == project.id)
            .order_by(Principal.name)
        ).all()
        role = role_of(session, caller, project.id)
        return ProjectView(
            id=project.id,
            name=project.name,
            description=project.description,
            personal=project.personal_of is not None,
            role=role.value if role else None,
            members=[MemberView(principal=n, role=r) for n, r in members],
            created_at=project.created_at,
        )

    def create(self, caller: Caller, name: str, description: str = "") -> ProjectView:
        """A new project owned by the caller's principal."""
        caller.require(Scope.WRITE)
        if caller.key_project_id is not None:
            raise Forbidden("a key bound to a project cannot create projects")
        check_name(name, "project name")
        with self._db.session() as session:
            project = Project(name=name, description=description)
            session.add(project)
            try:
                session.flush()
            except IntegrityError as exc:
                raise Conflict(f"a project named '{name}' already exists") from exc
            session.add(
                ProjectMember(
                    project_id=project.id, principal_id=caller.principal_id, role=Role.OWNER
                )
            )
            record(session, caller, "project.create", f"project:{name}", project_id=project.id)
            session.flush()
            view = self._view(session, caller, project)
        self._on_change(caller.principal_id)
        return view

    def list(self, caller: Caller) -> list[ProjectView]:
        """The projects the caller belongs to (every project, for an admin key)."""
        caller.require(Scope.READ)
        with self._db.session() as session:
            query = select(Project).order_by(Project.name)
            if not caller.acts_as_admin:
                mine = select(ProjectMember.project_id).where(
                    ProjectMember.principal_id == caller.principal_id
                )
                query = query.where(Project.id.in_(mine))
                if caller.key_project_id is not None:
                    query = query.where(Project.id == caller.key_project_id)
            return [self._view(session, caller, p) for p in session.scalars(query)]

    def get(self, caller: Caller, name: str) -> ProjectView:
        caller.require(Scope.READ)
        with self._db.session() as session:
            project = self._visible(session, caller, name)
            return self._view(session, caller, project)

    def _visible(self, session: Session, caller: Caller, name: str) -> Project:
        project = project_by_name(session, caller, name)
        if caller.key_project_id not in (None, project.id) and not caller.acts_as_admin:
            raise NotFound(f"no project named '{name}'")
        return project

    def update(self, caller: Caller, name: str, description: str) -> ProjectView:
        caller.require(Scope.WRITE)
        with self._db.session() as session:
            project = self._visible(session, caller, name)
            require_owner(session, caller, project)
            project.description = description
            record(session, caller, "project.update", f"project:{name}", project_id=project.id)
            session.flush()
            return self._view(session, caller, project)

    def delete(self, caller: Caller, name: str) -> None:
        """Delete an empty project (not a personal one); 409 while it holds anything."""
        caller.require(Scope.WRITE)
        with self._db.session() as session:
            project = self._visible(session, caller, name)
            require_owner(session, caller, project)
            if project.personal_of is not None:
                raise Conflict(f"'{name}' is a personal project; it goes with its principal")
            for table in RESOURCE_TABLES:
                count = session.scalar(
                    select(func.count()).select_from(table).where(table.project_id == project.id)
                )
                if count:
                    raise Conflict(
                        f"project '{name}' still holds {count} {table.__tablename__}; "
                        "delete or move them first"
                    )
            members = list(
                session.scalars(
                    select(ProjectMember.principal_id).where(ProjectMember.project_id == project.id)
                )
            )
            # Keys bound to the project cannot work anywhere else: they go with it.
            session.execute(delete(ApiKey).where(ApiKey.project_id == project.id))
            session.execute(delete(ProjectMember).where(ProjectMember.project_id == project.id))
            session.delete(project)
            record(session, caller, "project.delete", f"project:{name}", project_id=project.id)
        for principal_id in members:
            self._on_change(principal_id)

    def set_member(self, caller: Caller, name: str, principal: str, role: str) -> ProjectView:
        """Add ``principal`` to the project or change its role (owners and admins only)."""
        caller.require(Scope.WRITE)
        wanted = _parse_role(role)
        with self._db.session() as session:
            project = self._visible(session, caller, name)
            require_owner(session, caller, project)
            target = session.scalar(select(Principal).where(Principal.name == principal))
            if target is None:
                raise NotFound(f"no principal named '{principal}'")
            member = session.get(ProjectMember, (project.id, target.id))
            before = member.role if member else None
            if member is None:
                session.add(
                    ProjectMember(project_id=project.id, principal_id=target.id, role=wanted)
                )
            else:
                if before == Role.OWNER and wanted != Role.OWNER:
                    self._keep_an_owner(session, project, target.id)
                member.role = wanted
            record(
                session,
                caller,
                "project.member.set",
                f"project:{name}",
                {"principal": principal, "role": wanted.value, "before": before},
                project_id=project.id,
            )
            session.flush()
            view = self._view(session, caller, project)
        self._on_change(target.id)
        return view

    def remove_member(self, caller: Caller, name: str, principal: str) -> None:
        """Take ``principal`` out of the project (owners and admins; anyone may leave)."""
        caller.require(Scope.WRITE)
        with self._db.session() as session:
            project = self._visible(session, caller, name)
            target = session.scalar(select(Principal).where(Principal.name == principal))
            if target is None:
                raise NotFound(f"no principal named '{principal}'")
            if target.id != caller.principal_id:
                require_owner(session, caller, project)
            member = session.get(ProjectMember, (project.id, target.id))
            if member is None:
                raise NotFound(f"'{principal}' is not a member of project '{name}'")
            if project.personal_of == target.id:
                raise Conflict(f"'{principal}' owns the personal project '{name}' for good")
            if member.role == Role.OWNER:
                self._keep_an_owner(session, project, target.id)
            session.delete(member)
            record(
                session,
                caller,
                "project.member.remove",
                f"project:{name}",
                {"principal": principal, "role": member.role},
                project_id=project.id,
            )
        self._on_change(target.id)

    def _keep_an_owner(self, session: Session, project: Project, leaving: str) -> None:
        others = session.scalar(
            select(func.count())
            .select_from(ProjectMember)
            .where(
                ProjectMember.project_id == project.id,
                ProjectMember.role == Role.OWNER,
                ProjectMember.principal_id != leaving,
            )
        )
        if not others:
            raise Conflict(f"project '{project.name}' must keep at least one owner")


__all__ = [
    "MemberView",
    "ProjectService",
    "ProjectView",
    "create_personal_project",
    "personal_project_id",
    "principal_roles",
    "project_by_name",
    "require_owner",
    "role_of",
]
