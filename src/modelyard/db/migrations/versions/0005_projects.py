"""projects, their members, and the project each key and resource belongs to

Every principal gets a personal project (named after it, or after it with ``-personal`` and a
number when a project already has that name) in which it is the owner, and every data set,
model, job and deployment moves into its owner's personal project. Keys stay unbound.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 11:10:00.000000
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

RESOURCES = ("datasets", "models", "jobs", "deployments")


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("personal_of", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["personal_of"],
            ["principals.id"],
            name=op.f("fk_projects_personal_of_principals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
        sa.UniqueConstraint("personal_of", name=op.f("uq_projects_personal_of")),
    )
    op.create_table(
        "project_members",
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("principal_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_members_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name=op.f("fk_project_members_principal_id_principals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "principal_id", name=op.f("pk_project_members")),
    )
    op.create_index(op.f("ix_project_members_principal_id"), "project_members", ["principal_id"])
    op.create_table(
        "project_grants",
        sa.Column("resource_type", sa.String(length=16), nullable=False),
        sa.Column("resource_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("permission", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_grants_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "resource_type", "resource_id", "project_id", name=op.f("pk_project_grants")
        ),
    )
    op.create_index(op.f("ix_project_grants_project_id"), "project_grants", ["project_id"])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("project_id", sa.String(length=32), nullable=True))
        batch.create_foreign_key(
            op.f("fk_api_keys_project_id_projects"),
            "projects",
            ["project_id"],
            ["id"],
            ondelete="CASCADE",
        )
    for table in RESOURCES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("project_id", sa.String(length=32), nullable=True))
            batch.create_foreign_key(
                op.f(f"fk_{table}_project_id_projects"), "projects", ["project_id"], ["id"]
            )
            batch.create_index(op.f(f"ix_{table}_project_id"), ["project_id"])
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("project_id", sa.String(length=32), nullable=True))
        batch.create_index(op.f("ix_audit_log_project_id"), ["project_id"])
    _move_into_personal_projects()


def _move_into_personal_projects() -> None:
    conn = op.get_bind()
    principals = sa.table("principals", sa.column("id"), sa.column("name"))
    projects = sa.table(
        "projects",
        sa.column("id"),
        sa.column("name"),
        sa.column("description"),
        sa.column("personal_of"),
        sa.column("created_at"),
    )
    members = sa.table(
        "project_members",
        sa.column("project_id"),
        sa.column("principal_id"),
        sa.column("role"),
        sa.column("added_at"),
    )
    now = datetime.now(UTC)
    taken: set[str] = set()
    for principal_id, name in conn.execute(
        sa.select(principals.c.id, principals.c.name).order_by(principals.c.name)
    ).all():
        project_name = name
        n = 1
        while project_name in taken:
            project_name = f"{name}-personal" if n == 1 else f"{name}-personal-{n}"
            n += 1
        taken.add(project_name)
        project_id = uuid.uuid4().hex
        conn.execute(
            projects.insert().values(
                id=project_id,
                name=project_name,
                description=f"{name}'s personal project",
                personal_of=principal_id,
                created_at=now,
            )
        )
        conn.execute(
            members.insert().values(
                project_id=project_id, principal_id=principal_id, role="owner", added_at=now
            )
        )
        for table in RESOURCES:
            rows = sa.table(table, sa.column("owner_id"), sa.column("project_id"))
            conn.execute(
                rows.update().where(rows.c.owner_id == principal_id).values(project_id=project_id)
            )


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_index(op.f("ix_audit_log_project_id"))
        batch.drop_column("project_id")
    for table in RESOURCES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(op.f(f"ix_{table}_project_id"))
            batch.drop_constraint(op.f(f"fk_{table}_project_id_projects"), type_="foreignkey")
            batch.drop_column("project_id")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint(op.f("fk_api_keys_project_id_projects"), type_="foreignkey")
        batch.drop_column("project_id")
    op.drop_table("project_grants")
    op.drop_table("project_members")
    op.drop_table("projects")
