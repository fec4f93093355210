"""The API side of the queue: enqueue jobs, request cancels, derive a run's status from its jobs.

These functions take the API's ``session`` and only flush; the caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backend.app.db.models import Job, Preference, Run, utcnow
from backend.app.queue.transactions import (
    ACTIVE_STATES,
    _begin_write,
    _lock_run,
    _LockedRun,
)

__all__ = ["enqueue", "refresh_run_status", "request_cancel"]


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
