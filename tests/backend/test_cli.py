"""``pmtl db`` and ``pmtl user``: migrations, and a token printed alone on stdout."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from backend.app.core.security import authenticate
from backend.app.db.migrate import head_revision
from backend.app.db.session import create_db_engine, make_session_factory, session_scope
from backend.cli import register


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PMTL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PMTL_DATABASE_URL", raising=False)
    app = typer.Typer()
    register(app)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


def test_db_current_then_upgrade(cli):
    before = cli("db", "current")
    assert before.exit_code == 0
    assert before.stdout.startswith("none") and "pmtl db upgrade" in before.stdout
    assert cli("db", "upgrade").exit_code == 0
    after = cli("db", "current")
    assert after.stdout.strip() == f"{head_revision()} (up to date)"


def test_user_create_prints_only_the_token_and_it_authenticates(cli, tmp_path: Path):
    refused = cli("user", "create", "ann")
    assert refused.exit_code == 1
    assert "pmtl db upgrade" in refused.stderr and refused.stdout == ""
    cli("db", "upgrade")
    created = cli("user", "create", "ann", "--admin")
    assert created.exit_code == 0
    token = created.stdout.strip()
    assert created.stdout == token + "\n" and token.startswith("pmtl_")
    engine = create_db_engine(f"sqlite:///{tmp_path / 'home' / 'pmtl.db'}")
    try:
        with session_scope(make_session_factory(engine)) as session:
            user = authenticate(session, token)
            assert user is not None and user.name == "ann" and user.is_admin
    finally:
        engine.dispose()
    duplicate = cli("user", "create", "ann")
    assert duplicate.exit_code == 1 and "already exists" in duplicate.stderr
    cli("user", "create", "ben")
    listing = cli("user", "list").stdout.splitlines()
    assert listing == ["1\tann\tadmin\t1 token(s)", "2\tben\tuser\t1 token(s)"]


def test_user_token_and_revoke(cli, tmp_path: Path):
    cli("db", "upgrade")
    first = cli("user", "create", "cy").stdout.strip()
    second = cli("user", "token", "cy")
    assert second.exit_code == 0 and second.stdout.strip().startswith("pmtl_")
    assert cli("user", "list").stdout.splitlines() == ["1\tcy\tuser\t2 token(s)"]
    unknown = cli("user", "token", "nobody")
    assert unknown.exit_code == 1 and "no user named 'nobody'" in unknown.stderr
    revoked = cli("user", "revoke", "cy")
    assert revoked.exit_code == 0 and "revoked 2 token(s)" in revoked.stderr
    engine = create_db_engine(f"sqlite:///{tmp_path / 'home' / 'pmtl.db'}")
    try:
        with session_scope(make_session_factory(engine)) as session:
            assert authenticate(session, first) is None
            assert authenticate(session, second.stdout.strip()) is None
    finally:
        engine.dispose()
    assert cli("user", "list").stdout.splitlines() == ["1\tcy\tuser\t0 token(s)"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_up_does_not_print_the_database_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from backend import up

    url = "postgresql://pmtl:s3cret-pw@db.example:5432/pmtl"
    monkeypatch.setenv("PMTL_DATABASE_URL", url)
    migrated: list[str] = []
    monkeypatch.setattr("backend.app.db.migrate.upgrade", migrated.append)
    monkeypatch.setattr(up, "admin_token", lambda settings: "pmtl_admin")
    monkeypatch.setattr(up.Service, "start", lambda self: None)
    monkeypatch.setattr(up.Service, "stop", lambda self: None)

    def not_ready(url: str, timeout: float, alive) -> None:
        raise RuntimeError("the API did not become ready within 90 s")

    monkeypatch.setattr(up, "wait_for_api", not_ready)
    app = typer.Typer()
    up.register(app)
    app.command()(lambda: None)  # a second command, so `up` is invoked by name
    result = CliRunner().invoke(
        app,
        [
            "up",
            "--home",
            str(tmp_path / "home"),
            "--api-port",
            str(_free_port()),
            "--ui-port",
            str(_free_port()),
        ],
    )
    output = result.stdout + result.stderr
    assert result.exit_code == 1, output
    assert migrated == ["postgresql+psycopg://pmtl:s3cret-pw@db.example:5432/pmtl"]
    assert "s3cret-pw" not in output
    assert "database: postgresql+psycopg://pmtl:***@db.example:5432/pmtl" in output
