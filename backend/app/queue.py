"""The durable job queue on the service's own database: every job state transition lives here.

States: ``queued → running → finished | failed | cancelled`` (``running → queued`` again on a
retry, a graceful release or an expired lease). A worker takes a job with :func:`claim`, which
increments ``attempts`` and ``lease_token`` and leases the job for ``lease_seconds``; it keeps
the lease with :func:`renew` and ends it with :func:`finish`, :func:`fail`, :func:`release` or
:func:`cancel_running`. Leases that are not renewed are swept back to the queue by
:func:`reap_expired` (or to ``failed`` after ``max_attempts`` claims).

Database outages: a supervisor cut off from the database cannot renew its lease, so the job
is reaped (or abandoned by the supervisor itself) although its training never failed. Once the
database answers again, that supervisor calls :func:`refund_attempt`: the claim's attempt is
given back (and a job failed by the reaper for it is queued again), so only failures of the
training itself use up ``max_attempts``. The reaper records the lease token it ended
(``jobs.reaped_token``), which makes the refund exact and idempotent.

Fencing: every worker write (:func:`record_metrics`, :func:`record_artifact`,
:func:`record_divergence` and the terminal transitions) checks, in the same transaction, that
the job is still ``running`` under the caller's ``lease_token``; a worker whose lease was
reaped or taken over therefore writes nothing. On PostgreSQL the check locks the job row
(``FOR SHARE``), so a takeover cannot commit between the check and the write.

Transactions and dialects (all differences are in :func:`_begin_write` and :func:`_clock`):

- SQLite: every worker transaction starts with ``BEGIN IMMEDIATE``, so it holds the database's
  write lock from its first statement (readers continue under WAL; writers queue on
  ``busy_timeout``) and never fails half-way with ``SQLITE_BUSY_SNAPSHOT``. Times are the
  worker's clock, which is the database host's clock for a local file.
- PostgreSQL: times are the server's ``now()``, so leases do not depend on the worker hosts'
  clocks. Lock order is always *run row, then job rows*; only :func:`claim` and :func:`renew`
  lock a job row alone, and they never wait for a run row afterwards.
- ``metric_points.seq`` comes from a sequence, and two transactions may draw seqs in one order
  and commit in the other; a poller reading ``seq > after`` between the two commits would skip
  a row for good. :func:`record_metrics` therefore locks the run row (``FOR NO KEY UPDATE``)
  before inserting, so the metric inserts of one run are serialised and, per run, seq order is
  commit order. (SQLite has a single writer, so the property holds there by construction.)

Functions that take a ``session`` (:func:`enqueue`, :func:`request_cancel`,
:func:`refresh_run_status`) are called by the API inside its own session scope and only flush;
functions that take a ``session_factory`` run their own transaction and commit it. Worker-side
functions let database errors propagate as :class:`backend.app.db.session.DatabaseError`.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from backend.app.db.models import Artifact, Job, MetricPoint, Preference, Run, utcnow
from backend.app.db.session import session_scope
from backend.app.redact import public_error

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "Claim",
    "LeaseStatus",
    "MetricIn",
    "cancel_running",
    "claim",
    "drop_artifacts",
    "enqueue",
    "fail",
    "finish",
    "lock_run",
    "reap_expired",
    "record_artifact",
    "record_divergence",
    "record_metrics",
    "refresh_run_status",
    "refund_attempt",
    "release",
    "renew",
    "renew_status",
    "request_cancel",
]

log = logging.getLogger(__name__)

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


class LeaseStatus(enum.Enum):
    """What a renewal found: the lease is held, held but the run was cancelled, or lost."""

    HELD = "held"
    CANCEL = "cancel"
    LOST = "lost"


@dataclass(frozen=True)
class Claim:
    """A job leased to one worker; ``lease_token`` fences every write made under this lease."""

    job_id: int
    run_id: int
    lease_token: int
    attempts: int
    max_attempts: int
    epochs: int
    worker: str
    device: str
    lease_expires_at: datetime


@dataclass(frozen=True)
class MetricIn:
    """One metric point to store: losses and metrics of one preference at one epoch and split."""

    preference_id: int
    epoch: int
    split: str
    losses: Sequence[float]
    metrics: dict[str, Sequence[float]] = field(default_factory=dict)
    wall_time: float = 0.0


# ---------------------------------------------------------------- dialect helpers


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


def _insert_ignoring_duplicates(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT rows, skipping those that hit a unique constraint (``ON CONFLICT DO NOTHING``)."""
    dialect = postgresql if _dialect(session) == "postgresql" else sqlite
    session.execute(dialect.insert(table).on_conflict_do_nothing(), rows)


# ---------------------------------------------------------------- API side


def enqueue(
    session: Session,
    *,
    run: Run,
    preferences: Sequence[Preference] | Sequence[Sequence[float]],
    epochs: int,
    max_attempts: int = 3,
    warm_start: dict[str, int] | None = None,
) -> Job:
    """Create one queued job training ``preferences`` together, in the given order.

    ``preferences`` are Preference rows of ``run`` already added to the session (not yet
    flushed, since a preference needs its job), or plain vectors, for which rows are created
    with the next free run indices. Each row gets ``job`` and ``position`` (its row in the
    job's stacked model). ``warm_start`` maps ``str(preference.index)`` of a new preference to
    the id of the neighbouring preference it starts from; it is stored on the job as
    ``{str(preference.id): neighbour_id}`` and on each preference as ``warm_started_from``.
    The caller commits.
    """
    if not preferences:
        raise ValueError("a job needs at least one preference vector")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    with session.no_autoflush:
        _begin_write(session)
        locked = _lock_run(session, run.id)  # read under the lock: a cancel may just have won
    if locked is None:
        raise LookupError(f"run {run.id} does not exist")
    if run.cancel_requested or locked.cancel_requested:
        raise ValueError(f"run {run.id} was cancelled; it takes no new jobs")
    with session.no_autoflush:
        rows = _preference_rows(session, run, preferences)
        job = Job(run=run, state="queued", epochs=epochs, max_attempts=max_attempts)
        session.add(job)
        for position, pref in enumerate(rows):
            pref.job = job
            pref.position = position
    session.flush()
    if warm_start:
        job.warm_start = _resolve_warm_start(session, run, rows, warm_start)
    refresh_run_status(session, run.id)
    return job


def _preference_rows(
    session: Session, run: Run, preferences: Sequence[Preference] | Sequence[Sequence[float]]
) -> list[Preference]:
    if all(isinstance(p, Preference) for p in preferences):
        rows = list(preferences)  # type: ignore[arg-type]
        foreign = [p for p in rows if p.run is not run and p.run_id != run.id]
        if foreign:
            raise ValueError(f"preferences {[p.index for p in foreign]} belong to another run")
        return rows
    if any(isinstance(p, Preference) for p in preferences):
        raise ValueError("pass either Preference rows or vectors, not a mix")
    taken = [p.index for p in run.preferences if p.index is not None]
    stored = session.scalar(select(func.max(Preference.index)).where(Preference.run_id == run.id))
    start = max([*taken, stored if stored is not None else -1]) + 1
    rows = [
        Preference(run=run, index=start + i, vector=[float(x) for x in vec])  # type: ignore[union-attr]
        for i, vec in enumerate(preferences)
    ]
    session.add_all(rows)
    return rows


def _resolve_warm_start(
    session: Session, run: Run, rows: list[Preference], warm_start: dict[str, int]
) -> dict[str, int]:
    by_index = {str(p.index): p for p in rows}
    unknown = sorted(set(warm_start) - set(by_index))
    if unknown:
        raise ValueError(f"warm_start names preference indices {unknown} that are not in this job")
    resolved: dict[str, int] = {}
    for key, neighbour_id in warm_start.items():
        neighbour = session.get(Preference, int(neighbour_id))
        if neighbour is None or neighbour.run_id != run.id:
            raise ValueError(f"warm-start neighbour {neighbour_id} is not a preference of run")
        pref = by_index[key]
        pref.warm_started_from = neighbour.id
        resolved[str(pref.id)] = neighbour.id
    return resolved


def request_cancel(session: Session, run_id: int) -> bool:
    """Flag the run as cancelled: queued jobs are cancelled now, running ones by their worker.

    A supervisor sees the flag at its next renewal (every ``lease/3`` seconds), stops its
    training process (which writes a last checkpoint) and calls :func:`cancel_running`.
    A run whose jobs have all ended (finished or failed) is left as it is: there is nothing to
    stop, and it keeps its status (and still takes new preference vectors). Returns whether
    the run is (now) cancelled. Idempotent; runs under the run lock (:func:`lock_run`); the
    caller commits. ``LookupError`` if the run does not exist.
    """
    _begin_write(session)
    locked = _lock_run(session, run_id)
    if locked is None:
        raise LookupError(f"run {run_id} does not exist")
    if not locked.cancel_requested:
        states = set(session.scalars(select(Job.state).where(Job.run_id == run_id).distinct()))
        if states and not states & set(ACTIVE_STATES):
            return False  # already over: cancelling would only relabel it
    session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(cancel_requested=True)
        .execution_options(synchronize_session="evaluate")
    )
    session.execute(
        update(Job)
        .where(Job.run_id == run_id, Job.state == "queued")
        .values(state="cancelled", finished_at=utcnow())
        .execution_options(synchronize_session="evaluate")
    )
    _store_status(session, run_id, _LockedRun(locked.status, True))
    return True


def refresh_run_status(session: Session, run_id: int) -> str:
    """Derive ``run.status`` from its jobs, store it when it changed, and return it.

    running if any job runs; else queued if any is queued; else cancelled if a cancel was
    requested; else failed if any job failed; else finished (also for a mix of finished and
    cancelled jobs). A run without jobs keeps its status. The caller commits.
    """
    locked = _lock_run(session, run_id)
    if locked is None:
        raise LookupError(f"run {run_id} does not exist")
    return _store_status(session, run_id, locked)


def _store_status(session: Session, run_id: int, locked: _LockedRun) -> str:
    """Recount the jobs of a run locked by this transaction and store the derived status."""
    counts = dict(
        session.execute(
            select(Job.state, func.count()).where(Job.run_id == run_id).group_by(Job.state)
        ).all()
    )
    if not counts:
        return locked.status
    status = _derive_status(counts, locked.cancel_requested)
    if status != locked.status:
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(status=status, updated_at=utcnow())
            .execution_options(synchronize_session="evaluate")
        )
    return status


def _derive_status(counts: dict[str, int], cancel_requested: bool) -> str:
    if counts.get("running"):
        return "running"
    if counts.get("queued"):
        return "queued"
    if cancel_requested:
        return "cancelled"
    if counts.get("failed"):
        return "failed"
    return "finished"


# ---------------------------------------------------------------- worker side: leases


@contextmanager
def _write(session_factory: SessionFactory) -> Iterator[Session]:
    """The session scope of a worker-side transaction, already holding the write lock."""
    with session_scope(session_factory) as session:  # type: ignore[arg-type]
        _begin_write(session)
        yield session


def claim(
    session_factory: SessionFactory, *, worker: str, device: str, lease_seconds: float
) -> Claim | None:
    """Atomically lease the oldest queued job to ``worker``; None when the queue is empty.

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
        candidate = (
            select(Job.id)
            .join(Run, Run.id == Job.run_id)
            .where(Job.state == "queued", Run.cancel_requested.is_(False))
            .order_by(Job.id)
            .limit(1)
            .with_for_update(skip_locked=True, of=Job)
            .scalar_subquery()
        )
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
    result = Claim(
        job_id=row.id,
        run_id=row.run_id,
        lease_token=row.lease_token,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        epochs=row.epochs,
        worker=worker,
        device=device,
        lease_expires_at=row.lease_expires_at,
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


def _fenced(job_id: int, lease_token: int) -> Any:
    return (Job.id == job_id, Job.lease_token == lease_token, Job.state == "running")


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


# ---------------------------------------------------------------- worker side: fenced writes


def _check_lease(session: Session, job_id: int, lease_token: int) -> int | None:
    """Lock the run, then the job (shared); the run id if the lease is still the caller's."""
    run_id = session.scalar(select(Job.run_id).where(Job.id == job_id))
    if run_id is None or _lock_run(session, run_id) is None:
        return None
    held = session.execute(
        select(Job.id).where(*_fenced(job_id, lease_token)).with_for_update(read=True)
    ).first()
    return run_id if held is not None else None


def _finite(values: Iterable[float]) -> list[float | None]:
    """JSON-safe numbers: non-finite values (a diverged model) are stored as null."""
    out: list[float | None] = []
    for value in values:
        number = float(value)
        out.append(number if math.isfinite(number) else None)
    return out


def record_metrics(
    session_factory: SessionFactory, job_id: int, lease_token: int, points: Sequence[MetricIn]
) -> bool:
    """Store metric points if the caller still holds the lease; False (nothing written) if not.

    Idempotent per (preference, epoch, split): a point that exists is left as it is, so an
    epoch replayed after a crash neither duplicates nor replaces rows. The job's ``epoch``
    progress becomes the highest epoch stored. The run row is locked first so that per run
    ``seq`` order is commit order (see the module docstring).
    """
    with _write(session_factory) as session:
        run_id = _check_lease(session, job_id, lease_token)
        if run_id is None:
            return False
        if not points:
            return True
        own = set(session.scalars(select(Preference.id).where(Preference.job_id == job_id)))
        strangers = sorted({p.preference_id for p in points} - own)
        if strangers:
            raise ValueError(f"preferences {strangers} do not belong to job {job_id}")
        now = utcnow()
        rows = [
            {
                "run_id": run_id,
                "job_id": job_id,
                "preference_id": p.preference_id,
                "epoch": int(p.epoch),
                "split": p.split,
                "losses": _finite(p.losses),
                "metrics": {name: _finite(vals) for name, vals in p.metrics.items()},
                "wall_time": float(p.wall_time),
                "created_at": now,
            }
            for p in points
        ]
        _insert_ignoring_duplicates(session, MetricPoint.__table__, rows)
        top = max(p.epoch for p in points)
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.epoch < top)
            .values(epoch=top)
            .execution_options(synchronize_session=False)
        )
    return True


def record_artifact(
    session_factory: SessionFactory,
    job_id: int,
    lease_token: int,
    *,
    kind: str,
    epoch: int,
    path: str,
    sha256: str,
    size: int,
    preference_id: int | None = None,
) -> int | None:
    """Store (or replace) the artifact row of ``(job, kind, epoch, preference)``; its id.

    ``path`` is relative to the artifact root. A file rewritten for the same epoch (an epoch
    replayed after a crash) replaces the row, so the row always describes the file on disk.
    None (nothing written) when the caller no longer holds the lease.
    """
    with _write(session_factory) as session:
        run_id = _check_lease(session, job_id, lease_token)
        if run_id is None:
            return None
        pref_match = (
            Artifact.preference_id.is_(None)
            if preference_id is None
            else Artifact.preference_id == preference_id
        )
        existing = session.scalar(
            select(Artifact).where(
                Artifact.job_id == job_id,
                Artifact.kind == kind,
                Artifact.epoch == epoch,
                pref_match,
            )
        )
        if existing is None:
            existing = Artifact(
                run_id=run_id,
                job_id=job_id,
                preference_id=preference_id,
                kind=kind,
                epoch=epoch,
                path=path,
                sha256=sha256,
                size=size,
            )
            session.add(existing)
        else:
            existing.path, existing.sha256, existing.size = path, sha256, size
            existing.created_at = utcnow()
        session.flush()
        return existing.id


def drop_artifacts(
    session_factory: SessionFactory, job_id: int, lease_token: int, artifact_ids: Sequence[int]
) -> bool:
    """Delete artifact rows of this job (old or missing checkpoint files); fenced."""
    with _write(session_factory) as session:
        if _check_lease(session, job_id, lease_token) is None:
            return False
        if artifact_ids:
            session.execute(
                delete(Artifact).where(Artifact.job_id == job_id, Artifact.id.in_(artifact_ids))
            )
    return True


def record_divergence(
    session_factory: SessionFactory, job_id: int, lease_token: int, preference_id: int, epoch: int
) -> bool:
    """Mark a preference of this job as diverged (frozen by the engine) at ``epoch``; fenced."""
    with _write(session_factory) as session:
        if _check_lease(session, job_id, lease_token) is None:
            return False
        session.execute(
            update(Preference)
            .where(Preference.id == preference_id, Preference.job_id == job_id)
            .values(diverged=True, diverged_epoch=epoch)
            .execution_options(synchronize_session=False)
        )
    return True
