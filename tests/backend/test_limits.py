"""Limits: ``PMTL_MAX_ACTIVE_RUNS_PER_USER`` queued or running runs (then 429), and a job's
wall-clock limit ``PMTL_JOB_WALL_CLOCK_LIMIT_S`` (then failed, not retried)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backend.app.worker import run_worker
from tests.backend._api import Api
from tests.backend._queue_helpers import database, job_row, make_run, session_factory
from tests.backend._worker_helpers import worker_settings


@pytest.fixture
def limited(db_url: str, tmp_path: Path) -> Iterator[Api]:
    """An app allowing two queued or running runs per user."""
    with Api.start(db_url, tmp_path, max_active_runs_per_user=2) as harness:
        yield harness


def test_a_user_past_the_limit_gets_429_with_retry_after_and_a_reason(limited: Api):
    first = limited.create_run()
    limited.create_run()
    refused = limited.post("/runs", _body())
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    detail = refused.json()["detail"]
    assert "2 queued or running runs" in detail and "limit is 2" in detail
    # The limit is per user: bob is not affected.
    assert limited.post("/runs", _body(), user="bob").status_code == 201
    # A run that is no longer queued or running stops counting.
    assert limited.post(f"/runs/{first['id']}/cancel").status_code == 200
    assert limited.post("/runs", _body()).status_code == 201


def test_running_and_finished_runs_count_only_while_active(limited: Api):
    run = limited.create_run(preferences={"count": 1})
    claim = limited.claim()  # the run is now running: it still counts
    limited.create_run()
    assert limited.post("/runs", _body()).status_code == 429
    limited.finish(claim)
    assert limited.get(f"/runs/{run['id']}").json()["status"] == "finished"
    assert limited.post("/runs", _body()).status_code == 201


def test_two_simultaneous_submissions_cannot_both_take_the_last_place(limited: Api, monkeypatch):
    from backend.app import crud

    count = crud.active_run_count

    def slow_count(session, *, user):  # widen the window between counting and inserting
        active = count(session, user=user)
        time.sleep(0.5)
        return active

    monkeypatch.setattr(crud, "active_run_count", slow_count)
    limited.create_run()  # one place left
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: limited.post("/runs", _body()), range(2)))
    assert sorted(a.status_code for a in answers) == [201, 429], [a.text for a in answers]
    assert limited.get("/runs").json()["count"] == 2


def test_no_limit_by_default(api: Api):
    for _ in range(4):
        api.create_run()


def _body() -> dict:
    return {
        "name": "more",
        "problem": "concave",
        "method": "pareto_mtl",
        "preferences": {"count": 2},
        "training": {"epochs": 2},
    }


def test_a_job_past_the_wall_clock_limit_fails_once_with_a_clear_error(tmp_path: Path):
    """A real supervisor and training process: stopped after the limit, failed, not retried."""
    with database("sqlite", tmp_path) as url, session_factory(url) as factory:
        _, (job_id,) = make_run(
            factory, epochs=500, max_attempts=3, training={"epochs": 500, "steps_per_epoch": 4}
        )
        settings = worker_settings(tmp_path, url, job_wall_clock_limit_s=3.0)
        started = time.monotonic()
        assert run_worker(settings, "cpu", once=True) == 1
        job = job_row(factory, job_id)
    assert job.state == "failed" and job.attempts == 1
    assert "wall-clock limit of 3 s" in (job.error or "")
    assert job.epoch < 500
    assert time.monotonic() - started < 60
