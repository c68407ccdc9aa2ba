"""The Alembic migrations build exactly the schema that ``db/tables.py`` declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from modelyard.db.engine import create_database
from modelyard.db.migrate import upgrade_to_head
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
