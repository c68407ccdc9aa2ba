"""Projects and the access rules they add, at the service level, on SQLite and PostgreSQL.

The rules are read the way the API reads them: a key is authenticated into a ``Caller`` (with
its project, its binding and its principal's roles), then the services' SQL conditions pick
the rows it may see and ``may_access`` decides one resource.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from modelyard.auth.access import (
    Caller,
    Permission,
    Scope,
    may_access,
    may_reach,
    visible_clause,
)
from modelyard.auth.acl import AclEntry, replace_grants
from modelyard.auth.projects import ProjectService
from modelyard.auth.service import AuthService
from modelyard.db.engine import Database
from modelyard.db.tables import Model, ProjectMember
from modelyard.errors import Conflict, Forbidden, NotFound, Unauthenticated

ADMIN_KEY = "my_service-test-admin-key-0123456789abcdefghij"


class World:
    """An admin, three users with keys, and the services under test."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.auth = AuthService(db, cache_ttl_s=60)
        self.projects = ProjectService(db, on_change=self.auth.forget_principal)
        self.auth.bootstrap(ADMIN_KEY)
        self.admin = self.auth.authenticate(ADMIN_KEY)
        self.secrets: dict[str, str] = {}
        for name in ("ana", "bob", "eve"):
            self.auth.create_principal(self.admin, name)
            key = self.auth.create_key(self.admin, name, ["read", "write", "keys"], principal=name)
            self.secrets[name] = key.secret

    def caller(self, name: str) -> Caller:
        return self.auth.authenticate(self.secrets[name])

    def bound(self, name: str, project: str) -> Caller:
        key = self.auth.create_key(
            self.caller(name), f"{name}-{project}", ["read", "write"], project=project
        )
        return self.auth.authenticate(key.secret)

    def model(self, caller: Caller, name: str) -> Model:
        with self.db.session() as session:
            row = Model(
                name=name,
                description="",
                owner_id=caller.principal_id,
                project_id=caller.project_id,
            )
            session.add(row)
            session.flush()
            return row

    def visible(self, caller: Caller) -> set[str]:
        where = visible_clause(
            caller, "model", Model.id, Model.owner_id, Model.public, Model.project_id
        )
        with self.db.session() as session:
            return set(session.scalars(select(Model.name).where(where)))

    def may(self, caller: Caller, row: Model, permission: Permission) -> bool:
        with self.db.session() as session:
            return may_access(
                session,
                caller,
                resource_type="model",
                resource_id=row.id,
                owner_id=row.owner_id,
                public=row.public,
                permission=permission,
                project_id=row.project_id,
            )


@pytest.fixture
def world(migrated_db: Database) -> World:
    return World(migrated_db)


def test_roles_decide_reading_and_writing_and_changes_count_at_once(world: World) -> None:
    ana = world.caller("ana")
    world.projects.create(ana, "vision")
    world.projects.set_member(ana, "vision", "bob", "viewer")
    in_vision = world.model(world.bound("ana", "vision"), "v-model")
    personal = world.model(ana, "a-model")

    bob = world.caller("bob")
    assert world.visible(bob) == {"v-model"}
    assert world.may(bob, in_vision, Permission.READ)
    assert not world.may(bob, in_vision, Permission.WRITE)
    assert not world.may(bob, personal, Permission.READ)
    # A viewer's bound key loses write altogether.
    assert not world.bound("bob", "vision").has(Scope.WRITE)

    world.projects.set_member(ana, "vision", "bob", "member")
    bob = world.caller("bob")  # the remembered key was forgotten with the change
    assert world.may(bob, in_vision, Permission.WRITE)
    world.projects.remove_member(ana, "vision", "bob")
    bob = world.caller("bob")
    assert world.visible(bob) == set()
    assert not world.may(bob, in_vision, Permission.READ)

    # Eve reaches it only once it is shared with a project she is in.
    eve = world.caller("eve")
    world.projects.create(eve, "eve-team")
    assert not world.may(eve, in_vision, Permission.READ)
    with world.db.session() as session:
        replace_grants(
            session,
            ana,
            resource_type="model",
            resource_id=in_vision.id,
            owner_id=in_vision.owner_id,
            grants=[AclEntry(principal=None, permission="read", project="eve-team")],
        )
    eve = world.caller("eve")
    assert world.may(eve, in_vision, Permission.READ)
    assert not world.may(eve, in_vision, Permission.WRITE)
    assert world.visible(eve) == {"v-model"}


def test_a_bound_key_reaches_its_project_only(world: World) -> None:
    ana = world.caller("ana")
    world.projects.create(ana, "vision")
    ana_vision = world.bound("ana", "vision")
    world.model(ana_vision, "v-model")
    personal = world.model(ana, "a-model")
    assert world.visible(ana) == {"v-model", "a-model"}
    assert world.visible(ana_vision) == {"v-model"}
    assert not world.may(ana_vision, personal, Permission.READ)
    assert not may_reach(ana_vision, ana.principal_id, personal.project_id, Permission.READ)
    # It makes keys only for its own project, and manages no other project.
    with pytest.raises(Forbidden):
        world.auth.create_key(ana_vision, "other", ["read"], project="ana")
    with pytest.raises(Forbidden):
        world.projects.create(ana_vision, "elsewhere")
    assert [p.name for p in world.projects.list(ana_vision)] == ["vision"]


def test_membership_rules(world: World) -> None:
    ana = world.caller("ana")
    world.projects.create(ana, "vision")
    with pytest.raises(Conflict):
        world.projects.create(ana, "vision")
    with pytest.raises(Conflict):  # the last owner stays
        world.projects.remove_member(ana, "vision", "ana")
    with pytest.raises(Conflict):
        world.projects.set_member(ana, "vision", "ana", "member")
    with pytest.raises(NotFound):  # not a member: the project does not exist for Bob
        world.projects.set_member(world.caller("bob"), "vision", "bob", "owner")
    world.projects.set_member(ana, "vision", "bob", "member")
    with pytest.raises(Forbidden):  # a member manages nothing
        world.projects.set_member(world.caller("bob"), "vision", "eve", "viewer")
    world.projects.remove_member(world.caller("bob"), "vision", "bob")  # but may leave
    # An empty project is deleted with the keys bound to it.
    key = world.auth.create_key(ana, "ci", ["read"], project="vision")
    world.projects.delete(ana, "vision")
    with world.db.session() as session:
        assert (
            session.scalars(
                select(ProjectMember).where(ProjectMember.project_id == key.record.project_id)
            ).all()
            == []
        )
    with pytest.raises(Unauthenticated):
        world.auth.authenticate(key.secret)
