"""Metadata store: SQLAlchemy 2 tables, engine set-up and Alembic migrations."""

from modelyard.db.engine import Database, create_database
from modelyard.db.migrate import upgrade_to_head

__all__ = ["Database", "create_database", "upgrade_to_head"]
