"""Fixtures of the API tests: one app per test on its own SQLite file or PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.app.db.migrate import upgrade
from tests.backend import _db
from tests.backend._api import Api
from tests.conftest import require

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; tests get copies."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """A fresh migrated PostgreSQL database per test module (dropped afterwards); its URL."""
    reason = _db.postgres_reason()
    require(reason is None, reason or "")
    with _db.fresh_postgres(migrated=True) as name:
        yield _db.postgres_url(name)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty database for one test: a SQLite file, or the module's PostgreSQL
    database emptied (ids restarting at 1)."""
    if request.param == "sqlite":
        return _db.sqlite_copy(sqlite_template, tmp_path)
    url = request.getfixturevalue("postgres_database")
    _db.truncate_all(url)
    return url


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    """An app on the test's database with users alice, bob and an admin."""
    with Api.start(db_url, tmp_path) as harness:
        yield harness
