"""Migrations equal the models, upgrade/current work, and the schema check names the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from backend.app.db.migrate import current, head_revision, upgrade
from backend.app.db.models import Base
from backend.app.db.session import SchemaError, check_schema, create_db_engine
from tests.backend import _db
from tests.conftest import require


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path):
    """An empty, never migrated database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
        return
    reason = _db.postgres_reason()
    require(reason is None, reason or "")
    with _db.fresh_postgres(migrated=False) as name:
        yield _db.postgres_url(name)


def test_migrations_produce_exactly_the_models(blank_url: str):
    assert current(blank_url) is None
    upgrade(blank_url)
    assert current(blank_url) == head_revision()
    engine = create_db_engine(blank_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_schema_check_tells_the_user_to_upgrade_then_passes(blank_url: str):
    engine = create_db_engine(blank_url)
    try:
        with pytest.raises(SchemaError, match=r"run `pmtl db upgrade`"):
            check_schema(engine)
        upgrade(blank_url)
        check_schema(engine)
    finally:
        engine.dispose()


def test_downgrade_to_base_and_upgrade_again(blank_url: str):
    from alembic import command

    from backend.app.db.migrate import alembic_config

    upgrade(blank_url)
    command.downgrade(alembic_config(blank_url), "base")
    assert current(blank_url) is None
    upgrade(blank_url)
    assert current(blank_url) == head_revision()


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        engine.dispose()
