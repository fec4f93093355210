"""A real supervisor and training process record in-epoch progress in ``jobs.progress`` while a
job runs (rates measured, throttled), and the API's view drops it once the job finished."""

from __future__ import annotations

import time

import pytest

from backend.app.api.live import job_progress
from tests.backend._queue_helpers import DIALECTS, database, job_row, make_run, session_factory
from tests.backend._worker_helpers import supervisor_thread, wait_for, worker_settings

STEPS = 40  # concave steps take milliseconds to tens of ms: an epoch lasts under a few seconds
EVERY = 0.05  # PMTL_PROGRESS_SECONDS for this test: several reports inside every epoch


@pytest.fixture(params=DIALECTS)
def db(request, tmp_path):
    with database(request.param, tmp_path) as url, session_factory(url) as factory:
        yield url, factory


def test_the_supervisor_records_progress_inside_an_epoch(db, tmp_path):
    url, factory = db
    _, (job_id,) = make_run(
        factory, prefs_per_job=2, epochs=2, training={"epochs": 2, "steps_per_epoch": STEPS}
    )
    seen = []

    def reported():
        job = job_row(factory, job_id)
        view = job_progress(job)
        if view is not None:
            seen.append(view)
        return job.state == "finished"

    started = time.monotonic()
    with supervisor_thread(worker_settings(tmp_path, url, progress_seconds=EVERY)):
        wait_for(reported, 120, "the job to finish", every=0.02)
    elapsed = time.monotonic() - started

    job = job_row(factory, job_id)
    assert job.progress is not None and job.progress["lease_token"] == job.lease_token
    assert job_progress(job) is None  # finished: no stale promise
    assert seen, "no progress was visible while the job ran"
    assert all(v.batches == STEPS and 0 <= v.batch < STEPS for v in seen)
    # A function problem: steps and steps/s, no samples.
    assert all(v.samples_per_s is None and v.unit == "step" for v in seen)
    moving = [v for v in seen if v.batch > 0]
    assert moving and all(v.batches_per_s > 0 and v.seconds_left is not None for v in moving)
    # Throttled: at most one report per EVERY seconds (plus the first), whatever the step rate.
    assert len({v.updated_at for v in seen}) <= elapsed / EVERY + 1
