"""Leases: renewal, the terminal transitions, the reaper of expired leases and outage refunds.

Every transition is fenced by the job's ``lease_token`` and runs under the run lock
(:func:`backend.app.queue.transactions._lock_run`), so a worker whose lease was reaped or taken
over changes nothing.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import Session

from backend.app.db.models import Job, Run
from backend.app.queue.jobs import _store_status
from backend.app.queue.transactions import (
    LEASE_EXPIRED,
    OUTAGE_REFUNDED,
    SessionFactory,
    _clock,
    _fenced,
    _lock_run,
    _write,
)
from backend.app.redact import public_error

__all__ = [
    "LeaseStatus",
    "cancel_running",
    "fail",
    "finish",
    "reap_expired",
    "refund_attempt",
    "release",
    "renew",
    "renew_status",
]

log = logging.getLogger("backend.app.queue")


class LeaseStatus(enum.Enum):
    """What a renewal found: the lease is held, held but the run was cancelled, or lost."""

    HELD = "held"
    CANCEL = "cancel"
    LOST = "lost"


def renew_status(
    session_factory: SessionFactory, job_id: int, lease_token: int, *, lease_seconds: float
) -> LeaseStatus:
    """Extend the lease by ``lease_seconds`` from now and report the run's cancel flag.

    LOST when the job is no longer running under ``lease_token`` (reaped, taken over,
    deleted). The lease is extended even when a cancel was requested, so the holder keeps it
    while it stops its training process and stores the last checkpoint.
    """
    with _write(session_factory) as session:
        run_id = session.execute(
            update(Job)
            .where(*_fenced(job_id, lease_token))
            .values(heartbeat_at=_clock(session), lease_expires_at=_clock(session, lease_seconds))
            .returning(Job.run_id)
            .execution_options(synchronize_session=False)
        ).scalar()
        if run_id is None:
            return LeaseStatus.LOST
        cancel = session.scalar(select(Run.cancel_requested).where(Run.id == run_id))
    return LeaseStatus.CANCEL if cancel else LeaseStatus.HELD


def renew(
    session_factory: SessionFactory, job_id: int, lease_token: int, *, lease_seconds: float
) -> bool:
    """Extend the lease; False when it was lost or the run's cancel was requested."""
    status = renew_status(session_factory, job_id, lease_token, lease_seconds=lease_seconds)
    return status is LeaseStatus.HELD


def _end_lease(
    session_factory: SessionFactory,
    job_id: int,
    lease_token: int,
    values: Callable[[Session, bool], dict[str, Any]],
) -> str | None:
    """Apply a terminal transition under the run lock; the new state, or None if fenced out."""
    with _write(session_factory) as session:
        run_id = session.scalar(select(Job.run_id).where(Job.id == job_id))
        locked = None if run_id is None else _lock_run(session, run_id)
        if locked is None:
            return None
        state = session.execute(
            update(Job)
            .where(*_fenced(job_id, lease_token))
            .values(
                lease_owner=None,
                lease_expires_at=None,
                heartbeat_at=_clock(session),
                **values(session, locked.cancel_requested),
            )
            .returning(Job.state)
            .execution_options(synchronize_session=False)
        ).scalar()
        if state is not None:
            _store_status(session, run_id, locked)
        return state


def finish(session_factory: SessionFactory, job_id: int, lease_token: int) -> bool:
    """Mark the job finished (clears any error of earlier attempts); False if fenced out."""
    state = _end_lease(
        session_factory,
        job_id,
        lease_token,
        lambda s, _cancel: {"state": "finished", "error": None, "finished_at": _clock(s)},
    )
    return state is not None


def fail(
    session_factory: SessionFactory,
    job_id: int,
    lease_token: int,
    error: str,
    *,
    retry: bool = True,
) -> str | None:
    """Record ``error``; the job is queued again while attempts remain, else it fails.

    ``retry=False``: the job fails now whatever its attempts (another try cannot succeed).
    The stored text is what the run's owner sees, so it goes through
    :func:`backend.app.redact.public_error` (no traceback frames, paths or host names). A job
    of a cancelled run becomes ``cancelled``. Returns the new state, or None when the caller
    no longer holds the lease (nothing is written then).
    """
    text = public_error(error)

    def values(session: Session, cancel: bool) -> dict[str, Any]:
        if cancel:
            return {"state": "cancelled", "error": text, "finished_at": _clock(session)}
        if not retry:
            return {"state": "failed", "error": text, "finished_at": _clock(session)}
        exhausted = Job.attempts >= Job.max_attempts
        return {
            "state": case((exhausted, "failed"), else_="queued"),
            "error": text,
            "finished_at": case((exhausted, _clock(session)), else_=None),
        }

    return _end_lease(session_factory, job_id, lease_token, values)


def release(session_factory: SessionFactory, job_id: int, lease_token: int) -> bool:
    """Hand the job back to the queue (graceful shutdown); the attempt is not counted.

    A job of a cancelled run becomes ``cancelled`` instead. False if fenced out.
    """

    def values(session: Session, cancel: bool) -> dict[str, Any]:
        if cancel:
            return {"state": "cancelled", "finished_at": _clock(session)}
        return {"state": "queued", "attempts": case((Job.attempts > 0, Job.attempts - 1), else_=0)}

    return _end_lease(session_factory, job_id, lease_token, values) is not None


def cancel_running(session_factory: SessionFactory, job_id: int, lease_token: int) -> bool:
    """The holder stopped the job because its run was cancelled; False if fenced out."""
    state = _end_lease(
        session_factory,
        job_id,
        lease_token,
        lambda s, _cancel: {"state": "cancelled", "finished_at": _clock(s)},
    )
    return state is not None


def reap_expired(session_factory: SessionFactory) -> int:
    """Return running jobs whose lease expired to the queue; the number of jobs reaped.

    A reaped job is queued again while attempts remain (the next holder resumes from its last
    good checkpoint), fails once ``attempts >= max_attempts``, and is cancelled when its run's
    cancel was requested. Runs are handled one by one under their run lock, each job only if
    it is still running under the same lease token with an expired lease.
    """
    reaped = 0
    with _write(session_factory) as session:
        expired = session.execute(
            select(Job.id, Job.run_id, Job.lease_token, Job.lease_owner)
            .where(Job.state == "running", Job.lease_expires_at < _clock(session))
            .order_by(Job.run_id, Job.id)
        ).all()
        for run_id in sorted({row.run_id for row in expired}):
            locked = _lock_run(session, run_id)
            if locked is None:
                continue
            now = _clock(session)
            exhausted = Job.attempts >= Job.max_attempts
            if locked.cancel_requested:
                state: Any = "cancelled"
                finished: Any = now
            else:
                state = case((exhausted, "failed"), else_="queued")
                finished = case((exhausted, now), else_=None)
            changed = 0
            for row in (r for r in expired if r.run_id == run_id):
                count = session.execute(
                    update(Job)
                    .where(*_fenced(row.id, row.lease_token), Job.lease_expires_at < now)
                    .values(
                        state=state,
                        finished_at=finished,
                        error=LEASE_EXPIRED,
                        reaped_token=row.lease_token,
                        lease_owner=None,
                        lease_expires_at=None,
                    )
                    .execution_options(synchronize_session=False)
                ).rowcount
                if count:
                    log.info(
                        "job %s: the lease of %s (token %s) expired",
                        row.id,
                        row.lease_owner,
                        row.lease_token,
                    )
                changed += count
            if changed:
                reaped += changed
                _store_status(session, run_id, locked)
    if reaped:
        log.info("reaped %d job(s) with expired leases", reaped)
    return reaped


def refund_attempt(session_factory: SessionFactory, job_id: int, lease_token: int) -> bool:
    """Give back the attempt of claim ``lease_token``: its holder lost the database.

    The holder calls this once the database answers again, after it gave the job up because
    it could not renew the lease (it wrote no outcome of its own). Two cases are refunded:

    - the reaper ended the claim (``reaped_token`` is the claim's token): ``attempts`` goes
      down by one, also when another worker has claimed the job since; a job the reaper
      failed for it (its last attempt) is queued again, unless its run was cancelled;
    - nobody reaped it yet (still ``running`` under the claim): it is handed back to the
      queue like :func:`release` (cancelled if its run was).

    Anything else (the claim ended by its holder's own finish, fail or release, or already
    refunded) is left alone, so the call is idempotent. Returns whether an attempt was given
    back.
    """
    with _write(session_factory) as session:
        run_id = session.scalar(select(Job.run_id).where(Job.id == job_id))
        locked = None if run_id is None else _lock_run(session, run_id)
        if locked is None:
            return False
        ours = Job.lease_token == lease_token
        reaped = Job.reaped_token == lease_token
        abandoned = and_(ours, Job.state == "running")
        revive = and_(ours, reaped, Job.state == "failed")
        requeue = or_(abandoned, revive)
        waiting = or_(requeue, and_(ours, reaped, Job.state == "queued"))
        back = "cancelled" if locked.cancel_requested else "queued"
        now = _clock(session)
        changed = session.execute(
            update(Job)
            .where(Job.id == job_id, or_(reaped, abandoned))
            .values(
                attempts=case((Job.attempts > 0, Job.attempts - 1), else_=0),
                reaped_token=None,
                state=case((requeue, back), else_=Job.state),
                finished_at=case(
                    (requeue, now if locked.cancel_requested else None), else_=Job.finished_at
                ),
                error=case((waiting, OUTAGE_REFUNDED), else_=Job.error),
                lease_owner=case((abandoned, None), else_=Job.lease_owner),
                lease_expires_at=case((abandoned, None), else_=Job.lease_expires_at),
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if changed:
            _store_status(session, run_id, locked)
    if changed:
        log.info("job %s: attempt of lease %s given back (database outage)", job_id, lease_token)
    return bool(changed)
