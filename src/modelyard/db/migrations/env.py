"""Alembic environment: runs online against the engine handed over in the config."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from modelyard.db.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if not isinstance(engine, Engine):
        raise RuntimeError("modelyard migrations run through modelyard.db.upgrade_to_head")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
