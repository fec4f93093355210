"""Claims: which queued job a worker takes next, and the lease handle a claim returns.

:func:`claim` leases one job atomically; the order in which queued jobs are offered is
:func:`claim_order` alone (one place to change it, e.g. for fair share between users). The
returned :class:`Lease` carries the session factory, the job and its lease token, so the
holder renews, writes and ends the job through it without passing the three around.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import aliased

from backend.app.db.models import Job, Run, utcnow
from backend.app.queue import leases, writes
from backend.app.queue.transactions import SessionFactory, _clock, _write

__all__ = ["Claim", "Lease", "claim", "claim_order", "next_job"]

log = logging.getLogger("backend.app.queue")


@dataclass(frozen=True)
class Lease:
    """A job leased to one worker; ``lease_token`` fences every write made under this lease.

    The handle's methods are the queue's lease and fenced-write functions bound to this claim
    (``factory``, ``job_id``, ``lease_token``); each runs its own transaction.
    """

    job_id: int
    run_id: int
    lease_token: int
    attempts: int
    max_attempts: int
    epochs: int
    worker: str
    device: str
    lease_expires_at: datetime
    factory: SessionFactory | None = field(default=None, repr=False, compare=False)

    def _f(self) -> SessionFactory:
        if self.factory is None:
            raise ValueError("this claim has no session factory; pass it to the queue functions")
        return self.factory

    def renew(self, lease_seconds: float) -> leases.LeaseStatus:
        """Extend the lease (:func:`backend.app.queue.leases.renew_status`)."""
        return leases.renew_status(
            self._f(), self.job_id, self.lease_token, lease_seconds=lease_seconds
        )

    def record_metrics(self, points: Sequence[writes.MetricIn]) -> bool:
        """Store metric points under this lease; False if fenced out."""
        return writes.record_metrics(self._f(), self.job_id, self.lease_token, points)

    def record_artifact(self, **row: Any) -> int | None:
        """Store an artifact row under this lease; its id, or None if fenced out."""
        return writes.record_artifact(self._f(), self.job_id, self.lease_token, **row)

    def drop_artifacts(self, artifact_ids: Sequence[int]) -> bool:
        """Delete artifact rows of this job under this lease; False if fenced out."""
        return writes.drop_artifacts(self._f(), self.job_id, self.lease_token, artifact_ids)

    def record_divergence(self, preference_id: int, epoch: int) -> bool:
        """Mark a preference of this job diverged under this lease; False if fenced out."""
        return writes.record_divergence(
            self._f(), self.job_id, self.lease_token, preference_id, epoch
        )

    def finish(self) -> bool:
        """Mark the job finished; False if fenced out."""
        return leases.finish(self._f(), self.job_id, self.lease_token)

    def fail(self, error: str, *, retry: bool = True) -> str | None:
        """Record a failure (queued again while attempts remain); the new state or None."""
        return leases.fail(self._f(), self.job_id, self.lease_token, error, retry=retry)

    def release(self) -> bool:
        """Hand the job back to the queue without counting the attempt; False if fenced out."""
        return leases.release(self._f(), self.job_id, self.lease_token)

    def cancel_running(self) -> bool:
        """The job stopped because its run was cancelled; False if fenced out."""
        return leases.cancel_running(self._f(), self.job_id, self.lease_token)

    def refund_attempt(self) -> bool:
        """Give the attempt back after a database outage (idempotent)."""
        return leases.refund_attempt(self._f(), self.job_id, self.lease_token)


#: The historical name of the lease handle.
Claim = Lease


def claim_order(candidates: Select[Any]) -> Select[Any]:
    """The order in which queued jobs are claimed: fair between users, then oldest job first.

    The next job goes to the user whose last claimed job (latest ``started_at`` of any of
    their jobs) is oldest, a user never served first; ties by job age (id). ``candidates``
    selects ``jobs.id`` from queued jobs joined with their runs.
    """
    served, served_run = aliased(Job), aliased(Run)
    # One aggregate per claim (not one per candidate): each user's latest claim.
    last = (
        select(served_run.owner_id.label("owner_id"), func.max(served.started_at).label("at"))
        .join(served, served.run_id == served_run.id)
        .group_by(served_run.owner_id)
        .subquery()
    )
    return candidates.outerjoin(last, last.c.owner_id == Run.owner_id).order_by(
        last.c.at.asc().nulls_first(), Job.id
    )


def next_job() -> Any:
    """The id of the next claimable job, locked for the claimer (skipping others' locks)."""
    candidates = (
        select(Job.id)
        .join(Run, Run.id == Job.run_id)
        .where(Job.state == "queued", Run.cancel_requested.is_(False))
    )
    return (
        claim_order(candidates).limit(1).with_for_update(skip_locked=True, of=Job).scalar_subquery()
    )


def claim(
    session_factory: SessionFactory, *, worker: str, device: str, lease_seconds: float
) -> Lease | None:
    """Atomically lease the next queued job (:func:`claim_order`) to ``worker``; None if none.

    One statement on both dialects::

        UPDATE jobs SET state='running', attempts=attempts+1, lease_token=lease_token+1,
               lease_owner=:worker, worker=:worker, device=:device, heartbeat_at=now,
               started_at=now, lease_expires_at=now + :lease
        WHERE id = (SELECT jobs.id FROM jobs JOIN runs ON runs.id = jobs.run_id
                    WHERE jobs.state = 'queued' AND NOT runs.cancel_requested
                    ORDER BY jobs.id LIMIT 1 FOR UPDATE OF jobs SKIP LOCKED)
        RETURNING ...

    PostgreSQL's ``SKIP LOCKED`` lets concurrent claimers pass over each other's rows; on
    SQLite the statement runs inside ``BEGIN IMMEDIATE`` (the locking clause is not rendered).
    The run's status becomes ``running`` in a second, separate transaction (best effort: it
    is derived data, refreshed again by every later transition); it touches the run row only
    when the status changes, so claimers of one run do not queue behind each other.
    """
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
    with _write(session_factory) as session:
        candidate = next_job()
        now = _clock(session)
        stmt = (
            update(Job)
            .where(Job.id == candidate)
            .values(
                state="running",
                attempts=Job.attempts + 1,
                lease_token=Job.lease_token + 1,
                lease_owner=worker,
                worker=worker,
                device=device,
                heartbeat_at=now,
                started_at=now,
                lease_expires_at=_clock(session, lease_seconds),
            )
            .returning(
                Job.id,
                Job.run_id,
                Job.lease_token,
                Job.attempts,
                Job.max_attempts,
                Job.epochs,
                Job.lease_expires_at,
            )
            .execution_options(synchronize_session=False)
        )
        row = session.execute(stmt).first()
    if row is None:
        return None
    result = Lease(
        job_id=row.id,
        run_id=row.run_id,
        lease_token=row.lease_token,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        epochs=row.epochs,
        worker=worker,
        device=device,
        lease_expires_at=row.lease_expires_at,
        factory=session_factory,
    )
    try:
        with _write(session_factory) as session:
            session.execute(
                update(Run)
                .where(Run.id == result.run_id, Run.status != "running")
                .values(status="running", updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
    except Exception:  # the claim itself is committed; the status is refreshed again later
        log.warning(
            "could not mark run %s running after claiming job %s",
            result.run_id,
            result.job_id,
            exc_info=True,
        )
    return result
