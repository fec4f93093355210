"""Engines, the one session scope, and the schema-version check.

SQLite: WAL journal, a busy timeout and enforced foreign keys on every connection, usable from
several threads. PostgreSQL: psycopg 3 with ``pool_pre_ping``. ``session_scope`` commits on
success, rolls back on any error, always closes, and turns SQLAlchemy errors into
:class:`DatabaseError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "DatabaseError",
    "SchemaError",
    "check_schema",
    "create_db_engine",
    "current_revision",
    "make_session_factory",
    "ping",
    "session_scope",
]

#: Milliseconds a SQLite connection waits for a lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000


class DatabaseError(RuntimeError):
    """The database could not complete an operation (unreachable, locked, constraint, …)."""


class SchemaError(DatabaseError):
    """The database schema is not at the revision this code expects."""


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:  # noqa: ARG001
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the per-dialect settings this service relies on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine`` whose objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session; commit on success, roll back on error, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except exc.SQLAlchemyError as error:
        session.rollback()
        raise DatabaseError(f"database error: {_describe(error)}") from error
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _describe(error: exc.SQLAlchemyError) -> str:
    original = getattr(error, "orig", None)
    return str(original if original is not None else error).strip().splitlines()[0]


def ping(engine: Engine) -> None:
    """Run ``SELECT 1``; :class:`DatabaseError` if the database is unreachable."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except exc.SQLAlchemyError as error:
        raise DatabaseError(f"database unreachable: {_describe(error)}") from error


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None when never migrated)."""
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except exc.SQLAlchemyError as error:
        raise DatabaseError(f"database unreachable: {_describe(error)}") from error


def check_schema(engine: Engine) -> None:
    """Raise :class:`SchemaError` unless the database is at the migrations' head revision."""
    from backend.app.db.migrate import head_revision

    current = current_revision(engine)
    head = head_revision()
    if current != head:
        found = "no schema" if current is None else f"schema revision {current}"
        raise SchemaError(
            f"the database has {found} but this version of Pareto MTL Lab needs revision "
            f"{head}; run `pmtl db upgrade`"
        )
