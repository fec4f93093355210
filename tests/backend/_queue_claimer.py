"""Process body of the claim race, kept free of torch and pytest so that spawning is cheap."""

from __future__ import annotations

from typing import Any

from backend.app import queue
from backend.app.db.session import create_db_engine, make_session_factory


def claim_until_empty(url: str, worker: str, start: Any, results: Any) -> None:
    """Report ready, wait for the start signal, then claim and finish jobs until none is left.

    Puts ``("ready", worker)`` and then ``("done", worker, claimed job ids, error or None)`` on
    ``results``.
    """
    claimed: list[int] = []
    error = None
    engine = create_db_engine(url)
    try:
        factory = make_session_factory(engine)
        results.put(("ready", worker))
        if not start.wait(120):
            raise TimeoutError("no start signal")
        while job := queue.claim(factory, worker=worker, device="cpu", lease_seconds=120):
            claimed.append(job.job_id)
            if not queue.finish(factory, job.job_id, job.lease_token):
                raise AssertionError(f"{worker} lost the lease of job {job.job_id}")
    except BaseException as exc:  # reported to the parent, which fails the test
        error = f"{type(exc).__name__}: {exc}"
    finally:
        engine.dispose()
    results.put(("done", worker, claimed, error))
