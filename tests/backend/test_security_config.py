"""Settings from the environment, and bearer tokens stored only as hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.app.core.config import Settings, normalise_database_url
from backend.app.core.security import authenticate, create_token, create_user, hash_token
from backend.app.db.models import ApiToken, utcnow
from backend.app.db.session import create_db_engine, make_session_factory, session_scope


def test_defaults_derive_from_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=None)
    assert settings.home == Path("pmtl-data")
    assert settings.database_url == f"sqlite:///{tmp_path / 'pmtl-data' / 'pmtl.db'}"
    assert settings.artifact_root == tmp_path / "pmtl-data" / "artifacts"
    assert (settings.lease_seconds, settings.heartbeat_seconds, settings.max_attempts) == (
        30,
        10,
        3,
    )
    assert settings.max_request_bytes == 1 << 20 and settings.max_preferences == 256


def test_environment_and_env_file_are_read_with_the_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PMTL_LEASE_SECONDS=12\nPMTL_UNRELATED=ignored\n")
    monkeypatch.setenv("PMTL_DATABASE_URL", "postgresql://u:p@db:5432/lab")
    monkeypatch.setenv("PMTL_CORS_ORIGINS", "http://a.example, http://b.example")
    monkeypatch.setenv("PMTL_LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.lease_seconds == 12
    assert settings.database_url == "postgresql+psycopg://u:p@db:5432/lab"
    assert settings.cors_origins == ["http://a.example", "http://b.example"]
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://h/db", "postgresql+psycopg://h/db"),
        ("postgresql://h/db", "postgresql+psycopg://h/db"),
        ("postgresql+psycopg://h/db", "postgresql+psycopg://h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_urls_are_normalised_to_psycopg(url: str, expected: str):
    assert normalise_database_url(url) == expected


@pytest.fixture
def factory(tmp_path: Path):
    from backend.app.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    engine = create_db_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def test_tokens_are_random_prefixed_and_stored_only_as_sha256(factory):
    with session_scope(factory) as session:
        _user, token = create_user(session, "carol")
        _, other = create_user(session, "dave", admin=True)
    assert token.startswith("pmtl_") and len(token) >= 40 and token != other
    with session_scope(factory) as session:
        rows = session.query(ApiToken).all()
        assert {r.token_hash for r in rows} == {hash_token(token), hash_token(other)}
        assert all(token not in (r.token_hash, r.prefix) for r in rows)
        assert rows[0].prefix == token[:12]
        assert authenticate(session, token).name == "carol"
        assert authenticate(session, other).is_admin
        assert authenticate(session, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
        assert authenticate(session, "not-ours") is None
        assert authenticate(session, hash_token(token)) is None


def test_revoked_tokens_and_duplicate_names_are_refused(factory):
    with session_scope(factory) as session:
        user, token = create_user(session, "erin")
        second = create_token(session, user)
    with session_scope(factory) as session:
        row = session.query(ApiToken).filter_by(token_hash=hash_token(token)).one()
        row.revoked_at = utcnow()
    with session_scope(factory) as session:
        assert authenticate(session, token) is None
        assert authenticate(session, second).name == "erin"
        with pytest.raises(ValueError, match="already exists"):
            create_user(session, "erin")
        with pytest.raises(ValueError, match="1 to 100 characters"):
            create_user(session, "  ")
