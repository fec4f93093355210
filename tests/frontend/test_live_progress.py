"""In-epoch progress and queue places in the UI: the wording (pure functions), then the run
page header, its job lines and the Runs list in AppTest against a real API whose "worker" is
this test (it claims jobs and writes progress through the queue, as a supervisor does)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from frontend.lib.live_text import about, in_epoch_text, ordinal, queue_text
from frontend.lib.models import EpochProgress, QueuePlace, Run
from frontend.lib.views.runs import epoch_text, now_text, progress_fraction
from tests.frontend._apptest import ENTRY, PAGES, no_exception, texts
from tests.frontend._system import System

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _progress(**fields: Any) -> EpochProgress:
    base = {"epoch": 4, "batch": 120, "batches": 469, "fraction": 120 / 469}
    return EpochProgress.model_validate({**base, **fields})


def _run(status: str, epoch: int = 3, **extra: Any) -> Run:
    progress = {
        "jobs_total": 1,
        "jobs_finished": int(status == "finished"),
        "jobs_failed": 0,
        "jobs_running": int(status == "running"),
        "epoch": epoch,
        "epochs": 100,
        **extra.pop("progress", {}),
    }
    body = {
        "id": 7,
        "name": "r",
        "owner": "me",
        "problem": "multi_mnist",
        "method": "pareto_mtl",
        "status": status,
        "n_tasks": 2,
        "task_names": ["a", "b"],
        "n_preferences": 5,
        "progress": progress,
        "created_at": T0,
        "updated_at": T0,
        **extra,
    }
    return Run.model_validate(body)


def test_estimates_read_as_rough_durations():
    assert [about(s) for s in (0, 3, 41, 60, 119, 3599, 3600, 11_400)] == [
        "~5 s",
        "~5 s",
        "~45 s",
        "~1 min",
        "~2 min",
        "~60 min",
        "~1 h 00 min",
        "~3 h 10 min",
    ]
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 112)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "112th",
    ]


def test_in_epoch_text_says_batches_speed_and_time_left():
    text = in_epoch_text(
        _progress(samples_per_s=850.4, batches_per_s=3.3, seconds_left=105, job_seconds_left=9000)
    )
    assert text == (
        "epoch 4: batch 120/469 (26%) · 850 samples/s · ~2 min left in this epoch · "
        "~2 h 30 min to the last epoch"
    )
    steps = in_epoch_text(_progress(unit="step", batch=10, batches=40, fraction=0.25))
    assert steps == "epoch 4: step 10/40 (25%) · measuring speed"
    rate = in_epoch_text(_progress(unit="step", batches_per_s=12.5, seconds_left=2))
    assert "12.5 steps/s" in rate and "~5 s left in this epoch" in rate


def test_queue_text_says_the_place_and_what_holds_the_slots():
    alone = QueuePlace(position=1, queued=1, running_jobs=0, running_run_ids=[])
    assert queue_text(alone).startswith("next in line · no job is running")
    behind = QueuePlace(position=2, queued=3, running_jobs=1, running_run_ids=[2])
    assert queue_text(behind) == "2nd in line (1 job ahead) · waits behind 1 running job (run #2)"
    many = QueuePlace(position=4, queued=5, running_jobs=2, running_run_ids=[2, 5])
    assert queue_text(many).endswith("(3 jobs ahead) · waits behind 2 running jobs (runs #2, #5)")


def test_the_runs_list_moves_inside_an_epoch_and_forgets_it_when_over():
    live = {"in_epoch": _progress(samples_per_s=850.0).model_dump()}
    running = _run("running", progress=live)
    assert progress_fraction(running) == pytest.approx((3 + 120 / 469) / 100)
    assert now_text(running).startswith("batch 120/469")
    assert epoch_text(running) == "3/100 · " + now_text(running)
    # A report the chart has overtaken (epoch 4 already recorded) is not shown.
    overtaken = _run("running", epoch=4, progress=live)
    assert now_text(overtaken) == "" and progress_fraction(overtaken) == pytest.approx(0.04)
    place = {"position": 2, "queued": 2, "running_jobs": 1, "running_run_ids": [2]}
    assert now_text(_run("queued", epoch=0, queue=place)) == "2nd in line"
    assert now_text(_run("cancelled", progress=live)) == ""
    assert epoch_text(_run("cancelled", progress=live)).startswith("3/100 · ")  # epoch · jobs


# ------------------------------------------------------------------ AppTest, real API


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """An API on its own SQLite file with no worker: the tests play the worker."""
    with System.start(tmp_path_factory.mktemp("live-progress"), devices=None) as system:
        yield system


@pytest.fixture
def factory(api_only: System) -> Iterator[Any]:
    """A session factory on the API's database (what a supervisor on this host would use)."""
    from backend.app.db.session import create_db_engine, make_session_factory

    engine = create_db_engine(f"sqlite:///{Path(api_only.home) / 'pmtl.db'}")
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture
def page(api_only: System, monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    monkeypatch.setenv("PMTL_API_URL", api_only.api_url)
    monkeypatch.setenv("PMTL_TOKEN", api_only.token)
    monkeypatch.setenv("PMTL_POLL_SECONDS", "1")
    monkeypatch.setenv("PMTL_REQUEST_TIMEOUT", "20")

    def _open(name: str, **query: Any) -> AppTest:
        at = AppTest.from_file(str(ENTRY), default_timeout=60)
        at.run()
        for key, value in query.items():
            at.query_params[key] = str(value)
        at.switch_page(PAGES[name]).run()
        no_exception(at)
        return at

    return _open


def test_pages_show_in_epoch_progress_and_queue_places(api_only, factory, page):
    from backend.app import queue
    from backend.app.queue.progress import ProgressIn, record_progress

    training = {"epochs": 100, "steps_per_epoch": 469}
    first = api_only.create_run(name="training now", training=training)
    second = api_only.create_run(name="waiting", training=training)
    claim = queue.claim(factory, worker="test", device="cpu", lease_seconds=300)
    assert claim is not None and claim.run_id == first["id"]
    assert record_progress(
        factory,
        claim.job_id,
        claim.lease_token,
        ProgressIn(epoch=1, batch=120, batches=469, unit="step", batches_per_s=3.0),
    )

    at = page("run_detail", run=first["id"])
    shown = texts(at)
    assert "epoch 0/100 · epoch 1: step 120/469 (26%) · 3 steps/s" in shown
    assert "left in this epoch" in shown
    bars = [p.proto.text for p in at.get("progress")]
    assert any("step 120/469" in text for text in bars), bars

    waiting = texts(page("run_detail", run=second["id"]))
    assert f"next in line · waits behind 1 running job (run #{first['id']})" in waiting

    table = page("runs").dataframe[0].value
    now = dict(zip(table["id"], table["epoch · jobs"], strict=True))
    assert now[first["id"]].startswith("0/100 · step 120/469 · ~") and "left" in now[first["id"]]
    assert now[second["id"]] == "0/100 · next in line"

    assert queue.cancel_running(factory, claim.job_id, claim.lease_token)
    over = page("run_detail", run=first["id"])
    assert "step 120/469" not in texts(over)
    assert not any("step 120/469" in p.proto.text for p in over.get("progress"))
    table = page("runs").dataframe[0].value
    assert "step" not in dict(zip(table["id"], table["epoch · jobs"], strict=True))[first["id"]]
