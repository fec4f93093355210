"""Transactions of the queue: dialect differences, the write lock, the run lock and fencing.

Every difference between SQLite and PostgreSQL lives in :func:`_begin_write` and :func:`_clock`
(see :mod:`backend.app.queue` for the locking rules the other modules rely on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from backend.app.db.models import Job, Run, User, utcnow
from backend.app.db.session import session_scope

__all__ = ["ACTIVE_STATES", "TERMINAL_STATES", "SessionFactory", "lock_run"]

SessionFactory = Callable[[], Session]
ACTIVE_STATES = ("queued", "running")
TERMINAL_STATES = ("finished", "failed", "cancelled")
#: The error of a job whose lease ran out (who held it is logged, not shown to users).
LEASE_EXPIRED = "lease expired: its worker stopped renewing it (crashed, frozen or cut off)"
#: The error of a job whose holder gave its attempt back after losing the database.
OUTAGE_REFUNDED = (
    "lease expired while its worker was cut off from the database; queued again "
    "(not counted as an attempt)"
)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _clock(session: Session, seconds: float = 0.0) -> Any:
    """``now + seconds`` as a value for SQL: the server clock on PostgreSQL, ours on SQLite."""
    if _dialect(session) == "postgresql":
        now = func.now()
        return now + timedelta(seconds=seconds) if seconds else now
    return utcnow() + timedelta(seconds=seconds)


def _begin_write(session: Session) -> None:
    """Start a write transaction: ``BEGIN IMMEDIATE`` on SQLite; nothing to do on PostgreSQL."""
    if _dialect(session) != "sqlite":
        return
    raw = session.connection().connection.driver_connection
    if not raw.in_transaction:
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    else:
        # The driver already opened a (deferred) transaction; a first statement that writes
        # takes the write lock just as BEGIN IMMEDIATE would.
        session.execute(
            update(Job)
            .where(Job.id < 0)
            .values(state=Job.state)
            .execution_options(synchronize_session=False)
        )


@dataclass(frozen=True)
class _LockedRun:
    status: str
    cancel_requested: bool


def _lock_run(session: Session, run_id: int) -> _LockedRun | None:
    """Lock one run row for this transaction (``FOR NO KEY UPDATE`` on PostgreSQL; SQLite's
    write lock is already held) and read its status; None if the run does not exist."""
    stmt = (
        select(Run.status, Run.cancel_requested)
        .where(Run.id == run_id)
        .with_for_update(key_share=True)
    )
    row = session.execute(stmt).first()
    return None if row is None else _LockedRun(row.status, bool(row.cancel_requested))


def lock_run(session: Session, run_id: int) -> bool:
    """Make the caller the run's only writer until it commits; False if there is no such run.

    PostgreSQL: ``SELECT … FOR NO KEY UPDATE`` on the run row (what every state change of
    the run and its jobs takes first, so adding preferences, cancelling and the workers'
    transitions of one run are serialised); SQLite: ``BEGIN IMMEDIATE`` (the single writer).
    Read the run *after* this call to see its current state.
    """
    _begin_write(session)
    return _lock_run(session, run_id) is not None


def lock_user(session: Session, user_id: int) -> None:
    """Make the caller the only one changing what ``user_id`` owns until it commits.

    PostgreSQL: ``SELECT … FOR NO KEY UPDATE`` on the user row (new runs' foreign keys still
    insert beside it); SQLite: ``BEGIN IMMEDIATE``. What the caller counts after this call
    (the user's active runs, say) stays true until its commit. End any read-only transaction
    first, so that SQLite begins a fresh write transaction rather than upgrading a stale one.
    """
    _begin_write(session)
    session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


def _insert_ignoring_duplicates(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT rows, skipping those that hit a unique constraint (``ON CONFLICT DO NOTHING``)."""
    dialect = postgresql if _dialect(session) == "postgresql" else sqlite
    session.execute(dialect.insert(table).on_conflict_do_nothing(), rows)


@contextmanager
def _write(session_factory: SessionFactory) -> Iterator[Session]:
    """The session scope of a worker-side transaction, already holding the write lock."""
    with session_scope(session_factory) as session:  # type: ignore[arg-type]
        _begin_write(session)
        yield session


def _fenced(job_id: int, lease_token: int) -> Any:
    return (Job.id == job_id, Job.lease_token == lease_token, Job.state == "running")
