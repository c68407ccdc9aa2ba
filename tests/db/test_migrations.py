"""The Alembic migrations build exactly the schema that ``db/tables.py`` declares."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from modelyard.db.engine import create_database
from modelyard.db.migrate import alembic_config, upgrade_to_head
from modelyard.db.tables import Base


def test_the_migrations_produce_the_declared_tables(database_url: str) -> None:
    db = create_database(database_url)
    try:
        upgrade_to_head(db.engine)
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        db.dispose()
    assert differences == []


def test_existing_resources_move_into_a_personal_project_per_owner(database_url: str) -> None:
    db = create_database(database_url)
    config = alembic_config(db.engine)
    now = datetime.now(UTC)
    try:
        command.upgrade(config, "0004")
        with db.engine.begin() as conn:
            for pid, name in (("p1", "ana"), ("p2", "bo"), ("p3", "bo-personal")):
                conn.execute(
                    text(
                        "INSERT INTO principals (id, name, kind, is_admin, created_at) "
                        "VALUES (:id, :name, 'user', false, :at)"
                    ),
                    {"id": pid, "name": name, "at": now},
                )
            conn.execute(
                text(
                    "INSERT INTO models (id, name, description, owner_id, public, created_at) "
                    "VALUES ('m1', 'digits', '', 'p1', false, :at), "
                    "('m2', 'iris', '', 'p2', true, :at)"
                ),
                {"at": now},
            )
            conn.execute(
                text(
                    "INSERT INTO jobs (id, type, status, owner_id, spec, progress, metrics, "
                    "cancel_requested, attempt, created_at) VALUES ('j1', 'train', 'queued', "
                    "'p2', '{}', 0, '{}', false, 0, :at)"
                ),
                {"at": now},
            )
        upgrade_to_head(db.engine)
        with db.engine.connect() as conn:
            projects = {
                row.personal_of: row.name
                for row in conn.execute(text("SELECT name, personal_of FROM projects"))
            }
            members = set(
                conn.execute(text("SELECT project_id, principal_id, role FROM project_members"))
            )
            placed = dict(
                conn.execute(
                    text(
                        "SELECT m.name, p.name FROM models m JOIN projects p ON p.id = m.project_id"
                    )
                ).all()
            )
            job_project = conn.execute(
                text("SELECT p.personal_of FROM jobs j JOIN projects p ON p.id = j.project_id")
            ).scalar_one()
            ids = dict(conn.execute(text("SELECT personal_of, id FROM projects")).all())
    finally:
        db.dispose()
    # Project names stay unique: principals come in name order, each taking its own name.
    assert projects["p1"] == "ana"
    assert projects["p2"] == "bo"
    assert projects["p3"] == "bo-personal"
    assert members == {(ids[p], p, "owner") for p in ("p1", "p2", "p3")}
    assert placed == {"digits": "ana", "iris": "bo"}
    assert job_project == "p2"
