"""Eight real processes race to claim 500 queued jobs: each job is claimed exactly once.

Each process claims with the production ``claim`` (SKIP LOCKED on PostgreSQL, BEGIN IMMEDIATE
on SQLite) and finishes what it gets; the test then checks the claim lists and the database.
"""

from __future__ import annotations

import multiprocessing
import queue as stdlib_queue
from collections import Counter

import pytest
from sqlalchemy import select

from backend.app.db.models import Job, Run
from backend.app.db.session import session_scope
from tests.backend._queue_claimer import claim_until_empty
from tests.backend._queue_helpers import DIALECTS, bulk_queue, database, session_factory

PROCESSES = 8
RUNS = 10
JOBS_PER_RUN = 50


def _collect(results, kind: str, count: int, timeout: float) -> list[tuple]:
    messages = []
    try:
        while len(messages) < count:
            message = results.get(timeout=timeout)
            assert message[0] == kind, message
            messages.append(message)
    except stdlib_queue.Empty:
        pytest.fail(f"only {len(messages)} of {count} claimers reported {kind!r} in time")
    return messages


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_job_is_claimed_exactly_once(dialect, tmp_path):
    with database(dialect, tmp_path) as url:
        with session_factory(url) as factory:
            job_ids = bulk_queue(factory, runs=RUNS, jobs_per_run=JOBS_PER_RUN)

        ctx = multiprocessing.get_context("spawn")
        start, results = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=claim_until_empty, args=(url, f"worker-{i}", start, results))
            for i in range(PROCESSES)
        ]
        for proc in procs:
            proc.start()
        try:
            _collect(results, "ready", PROCESSES, timeout=120)
            start.set()  # every process is connected: the race starts now
            reports = _collect(results, "done", PROCESSES, timeout=180)
        finally:
            for proc in procs:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
                    proc.join()

        assert [error for *_, error in reports if error] == []
        claimed = [job for _, _, jobs, _ in reports for job in jobs]
        assert [job for job, n in Counter(claimed).items() if n > 1] == []
        assert sorted(claimed) == sorted(job_ids)
        # The race was real: several processes got work.
        assert sum(1 for _, _, jobs, _ in reports if jobs) > 1

        with session_factory(url) as factory, session_scope(factory) as session:
            rows = session.execute(select(Job.state, Job.attempts, Job.lease_token)).all()
            statuses = set(session.scalars(select(Run.status)))
        assert Counter(rows) == {("finished", 1, 1): RUNS * JOBS_PER_RUN}
        assert statuses == {"finished"}
