"""Probes, Prometheus metrics and the schema check, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import random
import re
import string
from pathlib import Path

import pytest

from backend.app.core.config import Settings
from backend.app.db.migrate import upgrade
from backend.app.main import create_app
from tests.backend import _db
from tests.backend._api import Api, TestClient
from tests.conftest import require


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path):
    """A database that exists but was never migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    reason = _db.postgres_reason()
    require(reason is None, reason or "")
    with _db.fresh_postgres(migrated=False) as name:
        yield _db.postgres_url(name)


def test_readyz_is_false_before_migrations_and_true_after(empty_db_url: str, tmp_path: Path):
    app = create_app(Settings(_env_file=None, database_url=empty_db_url, home=tmp_path))
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        before = client.get("/readyz")
        assert before.status_code == 503
        body = before.json()
        assert body["status"] == "not ready"
        assert body["database"] is True and body["migrations"] is False
        assert "pmtl db upgrade" in body["detail"]
        # The API itself refuses with the same advice instead of failing on missing tables.
        api = client.get("/api/v1/runs", headers={"Authorization": "Bearer pmtl_x"})
        assert api.status_code == 503
        assert "run `pmtl db upgrade`" in api.json()["detail"]
        upgrade(empty_db_url)
        after = client.get("/readyz")
        assert after.status_code == 200
        assert after.json() == {
            "status": "ready",
            "database": True,
            "migrations": True,
            "detail": None,
        }
        assert client.get("/api/v1/runs", headers={"Authorization": "Bearer x"}).status_code == 401


def test_readyz_reports_an_unreachable_database(tmp_path: Path, caplog):
    url = "postgresql+psycopg://pmtl:s3cret@127.0.0.1:1/nowhere?connect_timeout=2"
    app = create_app(Settings(_env_file=None, database_url=url, home=tmp_path))
    caplog.set_level(logging.WARNING, logger="backend")
    with TestClient(app) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["database"] is False
        assert body["detail"] == "the database is unreachable"
        # Nothing about the driver, the server's address or the credentials reaches the client…
        for secret in ("127.0.0.1", "psycopg", "s3cret", "pmtl", "nowhere", "port", "connection"):
            assert secret not in response.text.lower(), secret
        me = client.get("/api/v1/me", headers={"Authorization": "Bearer x"})
        assert me.status_code == 503 and "127.0.0.1" not in me.text
    # …but the operator finds the real error in the log.
    assert "127.0.0.1" in caplog.text and "s3cret" not in caplog.text


#: Every HTTP method token that gets a label of its own; anything else is ``OTHER``.
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"}


def test_unknown_http_methods_share_one_metrics_label(api: Api):
    rng = random.Random(0)
    tokens = {"".join(rng.choices(string.ascii_letters, k=rng.randint(3, 12))) for _ in range(80)}
    for token in sorted(tokens):
        response = api.client.request(token, "/api/v1/runs", headers=api.headers())
        assert response.status_code < 500, (token, response.status_code)
        api.client.request(token, f"/nowhere/{token}")
    api.get("/runs")
    api.client.options("/api/v1/runs")
    text = api.client.get("/metrics").text
    methods = set(re.findall(r'_count\{method="([^"]*)"', text))
    assert methods <= KNOWN_METHODS | {"OTHER"}, sorted(methods - KNOWN_METHODS)[:5]
    assert {"GET", "OPTIONS", "OTHER"} <= methods
    series = re.findall(r"^pmtl_http_request_duration_seconds_count\{.*$", text, re.MULTILINE)
    assert len(series) < 20, series


def test_metrics_exposes_queue_gauge_job_counters_and_latency_histogram(api: Api):
    run = api.create_run()
    api.create_run()
    claim = api.claim()
    api.report(claim, 1, {p["id"]: [1.0, 1.0] for p in run["preferences"]})
    api.finish(claim)
    api.get(f"/runs/{run['id']}")
    api.get("/runs/12345")
    text = api.client.get("/metrics").text
    assert 'pmtl_queue_jobs{state="queued"} 1.0' in text
    assert 'pmtl_queue_jobs{state="finished"} 1.0' in text
    assert 'pmtl_queue_jobs{state="running"} 0.0' in text
    assert "pmtl_jobs_started_total 1.0" in text
    assert "pmtl_jobs_finished_total 1.0" in text
    assert "pmtl_jobs_failed_total 0.0" in text
    # Latency is labelled by route template, not by raw path.
    assert (
        'pmtl_http_request_duration_seconds_count{method="GET",route="/api/v1/runs/{run_id}",'
        'status="200"} 1.0'
    ) in text
    assert 'route="/api/v1/runs/{run_id}",status="404"} 1.0' in text
    assert "/runs/12345" not in text
    assert "# TYPE pmtl_http_request_duration_seconds histogram" in text


def test_each_app_has_its_own_metrics_registry(api: Api, tmp_path: Path):
    api.get("/me")
    api.get("/me")
    second = create_app(
        Settings(_env_file=None, database_url=api.settings.database_url, home=tmp_path)
    )
    with TestClient(second) as client:
        assert 'route="/api/v1/me"' not in client.get("/metrics").text
    assert 'route="/api/v1/me",status="200"} 2.0' in api.client.get("/metrics").text


def test_openapi_documents_operation_ids_and_error_responses(api: Api):
    schema = api.client.get("/openapi.json").json()
    ids = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {"runs-create_run", "runs-list_runs", "metrics-metrics", "models-model"} <= ids
    create = schema["paths"]["/api/v1/runs"]["post"]
    assert {"201", "401", "413", "422", "503"} <= set(create["responses"])
    get_run = schema["paths"]["/api/v1/runs/{run_id}"]["get"]
    assert get_run["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_cors_headers_follow_the_settings(db_url: str, tmp_path: Path):
    with Api.start(db_url, tmp_path, cors_origins=["http://ui.example"]) as api:
        preflight = api.client.options(
            "/api/v1/runs",
            headers={
                "Origin": "http://ui.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Authorization",
            },
        )
        assert preflight.headers["access-control-allow-origin"] == "http://ui.example"
        other = api.client.get("/healthz", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
