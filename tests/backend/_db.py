"""Throw-away databases for backend tests: SQLite files and PostgreSQL databases.

PostgreSQL databases are named ``pmtl_t_<random>`` on the server of ``PMTL_TEST_POSTGRES_URL``;
one is created (and migrated) per test module and emptied before each test.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from backend.app.db.migrate import upgrade
from backend.app.db.models import Base
from tests.settings import POSTGRES_URL

__all__ = [
    "drop_postgres",
    "fresh_postgres",
    "postgres_reason",
    "postgres_url",
    "sqlite_copy",
    "truncate_all",
]


def _admin_dsn() -> str:
    url = make_url(POSTGRES_URL).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def postgres_url(name: str) -> str:
    """The SQLAlchemy URL of database ``name`` on the test server."""
    url = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def postgres_reason() -> str | None:
    """None if the test server answers, else why not."""
    try:
        with psycopg.connect(_admin_dsn(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {POSTGRES_URL} unavailable: {str(exc).strip().splitlines()[0]}"
    return None


def _admin(sql: str) -> None:
    with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
        conn.execute(sql)


def create_postgres() -> str:
    """Create an empty database and return its name."""
    name = f"pmtl_t_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}")
    return name


def drop_postgres(name: str) -> None:
    """Drop a test database, closing any connection still open to it."""
    assert name.startswith("pmtl_t_"), name
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def fresh_postgres(*, migrated: bool) -> Iterator[str]:
    """A new database for the duration of the block; yields its name."""
    name = create_postgres()
    try:
        if migrated:
            upgrade(postgres_url(name))
        yield name
    finally:
        drop_postgres(name)


def truncate_all(url: str) -> None:
    """Empty every table of the service schema and restart the id sequences."""
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


def sqlite_copy(template: Path, directory: Path) -> str:
    """Copy a migrated SQLite template into ``directory``; return the copy's URL."""
    target = directory / "pmtl.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"
