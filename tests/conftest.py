"""Fixtures shared by the whole suite: settings, PostgreSQL databases, live servers."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelyard.db.engine import Database, create_database
from modelyard.db.migrate import upgrade_to_head

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_available() -> bool:
    return _pg_available()


@pytest.fixture
def pg_url(pg_available: bool) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    if not pg_available:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    import psycopg

    name = f"modelyard_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both metadata stores: the SQLite default and the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def migrated_db(database_url: str) -> Iterator[Database]:
    """Each metadata store, migrated to the newest schema."""
    database = create_database(database_url)
    upgrade_to_head(database.engine)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path, for a server's TMPDIR: the job executor puts a
    Unix socket under TMPDIR, and socket paths are limited to about 100 bytes (a test's
    ``tmp_path`` under pytest-xdist can be longer)."""
    with tempfile.TemporaryDirectory(prefix="my-") as tmp:
        yield Path(tmp)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., object]:
    """Build Settings rooted in the test's temporary directory."""
    from modelyard.config import Settings

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {"data_dir": tmp_path / "data"}
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make
