"""The UI's small rules, as pure functions: progress, training time, reference points, the
header's epoch, duplicate vectors, loopback addresses, row numbers and empty-front messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from frontend.lib import preferences
from frontend.lib.live_store import MetricStore
from frontend.lib.models import MetricPoint, QueuePlace, RunDetail
from frontend.lib.session import is_loopback
from frontend.lib.views.add_preferences import new_vectors
from frontend.lib.views.compare import aligned_reference, training_time
from frontend.lib.views.live_front import _empty_message
from frontend.lib.views.preference_input import numbered_table
from frontend.lib.views.run_parts import epoch_reached, preference_label, status_line
from frontend.lib.views.runs import progress_fraction

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _run(
    status: str = "running", jobs: list[dict[str, Any]] | None = None, **progress
) -> RunDetail:
    jobs = jobs or [{"id": 1, "state": status, "preference_ids": [20, 21]}]
    prefs = [
        {"id": 20, "index": 0, "vector": [1.0, 0.0], "job_id": 1, "status": jobs[0]["state"]},
        {"id": 21, "index": 1, "vector": [0.0, 1.0], "job_id": 1, "status": jobs[0]["state"]},
    ]
    base = {"jobs_total": 2, "jobs_finished": 0, "jobs_failed": 0, "jobs_running": 0}
    return RunDetail.model_validate(
        {
            "id": 3,
            "name": "r",
            "owner": "me",
            "problem": "concave",
            "method": "pareto_mtl",
            "status": status,
            "n_tasks": 2,
            "task_names": ["f1", "f2"],
            "n_preferences": 2,
            "progress": {**base, "epoch": 5, "epochs": 30, **progress},
            "created_at": T0,
            "updated_at": T0,
            "preferences": prefs,
            "jobs": jobs,
        }
    )


def _store(epochs: dict[int, int]) -> MetricStore:
    store = MetricStore(run_id=3, n_tasks=2)
    points, seq = [], 0
    for pref, last in epochs.items():
        for epoch in range(1, last + 1):
            seq += 1
            points.append(
                MetricPoint(
                    seq=seq, preference_id=pref, epoch=epoch, split="train", losses=[1.0, 1.0]
                )
            )
    store.add(points, seq, "running")
    return store


def test_progress_counts_epochs_of_unfinished_jobs():
    assert progress_fraction(_run(jobs_total=1, epoch=5, epochs=30)) == pytest.approx(5 / 30)
    assert progress_fraction(_run(jobs_total=2, jobs_finished=1, epoch=15)) == pytest.approx(0.75)
    assert progress_fraction(_run(jobs_total=0)) == 0.0


def test_training_time_leaves_out_the_queue():
    jobs = [
        {
            "id": 1,
            "state": "finished",
            "started_at": T0,
            "finished_at": T0 + timedelta(seconds=19.4),
        },
        {
            "id": 2,
            "state": "finished",
            "started_at": T0 + timedelta(seconds=52),
            "finished_at": T0 + timedelta(seconds=71.6),
        },
    ]
    assert training_time(_run("finished", jobs)) == pytest.approx(19.4 + 19.6)
    overlapping = [dict(jobs[0]), {**jobs[1], "started_at": T0 + timedelta(seconds=10)}]
    assert training_time(_run("finished", overlapping)) == pytest.approx(71.6)
    assert training_time(_run("queued", [{"id": 1, "state": "queued"}])) is None


def test_reference_points_align_to_the_apis():
    assert aligned_reference([[1.1, 1.1], [1.1, 1.1]]) == ([1.1, 1.1], True)
    assert aligned_reference([[1.0, 2.0], [1.5, 1.0], None]) == ([1.5, 2.0], False)
    assert aligned_reference([None]) == (None, True)


def test_header_epoch_is_the_one_the_chart_reads():
    run = _run(epoch=19)  # the job row lags behind the points
    store = _store({20: 29, 21: 29})
    assert epoch_reached(run, store) == 29
    assert "epoch 29/30" in status_line(run, store)
    assert epoch_reached(run, _store({20: 3})) == 0  # #21 has no point yet


def test_a_queued_run_with_a_running_job_reads_running_and_queued_says_it_waits():
    busy = _run("queued", [{"id": 1, "state": "running", "preference_ids": [20, 21]}])
    assert ":blue-badge[running]" in status_line(busy, _store({}))
    waiting = _run("queued", [{"id": 1, "state": "queued", "preference_ids": [20, 21]}])
    assert "waiting for a free worker slot" in status_line(waiting, _store({}))
    assert "waiting for a free worker slot" in _empty_message(waiting)
    place = {"position": 2, "queued": 3, "running_jobs": 1, "running_run_ids": [2]}
    placed = waiting.model_copy(update={"queue": QueuePlace.model_validate(place)})
    for text in (status_line(placed, _store({})), _empty_message(placed)):
        assert "2nd in line (1 job ahead) · waits behind 1 running job (run #2)" in text
        assert "free worker slot" not in text
    cancelled = _run("cancelled", [{"id": 1, "state": "cancelled", "preference_ids": [20]}])
    message = _empty_message(cancelled)
    assert "cancelled" in message and "as soon as" not in message


def test_one_number_per_preference_the_apis_id():
    run = _run()
    assert preference_label(run.preferences[0]) == "#20 (1.00, 0.00)"


def test_vectors_the_run_already_has_are_left_out():
    fresh, repeated = new_vectors([[1.0, 0.0], [0.6, 0.8]], [[1.0, 0.0], [0.0, 1.0]])
    assert fresh == [[0.6, 0.8]] and repeated == 1


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.0.1.1", True),
        ("0.0.0.0", False),
        ("", False),
        (None, False),
        ("192.168.1.5", False),
        ("lab.example.org", False),
    ],
)
def test_loopback_addresses(address, local):
    assert is_loopback(address) is local


def test_table_rows_are_numbered_as_the_messages_count():
    table = numbered_table([[1.0, 0.0], [0.0, 0.0], [-1.0, 1.0]], ["f1", "f2"])
    assert list(table.index) == [1, 2, 3]
    _, errors = preferences.validate_rows(preferences.from_table(table), 2)
    assert [e.split(":")[0] for e in errors] == ["row 2", "row 3"]
