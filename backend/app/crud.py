"""Data functions behind the routes: visibility, run creation, preferences, metric queries.

Every function takes the session and keyword arguments; job state transitions are left to
:mod:`backend.app.queue` (enqueue, cancel requests, run status).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session, selectinload

from backend.app import queue
from backend.app.db.models import Artifact, Job, MetricPoint, Preference, Run, User
from backend.app.fronts import LatestPoint

__all__ = [
    "active_run_count",
    "add_preferences",
    "checkpointed_job_ids",
    "create_run",
    "get_visible_run",
    "latest_metric_points",
    "list_runs",
    "metric_page",
    "nearest_by_angle",
    "run_metric_points",
]


def _visible(stmt: Select, user: User) -> Select:
    return stmt if user.is_admin else stmt.where(Run.owner_id == user.id)


def get_visible_run(
    session: Session, *, user: User, run_id: int, children: bool = True
) -> Run | None:
    """The run if it exists and ``user`` may see it (owner or admin), else None.

    ``children`` loads its preferences and jobs too (one query each); pollers that need only
    the run row pass False.
    """
    stmt = _visible(select(Run).where(Run.id == run_id), user)
    if children:
        stmt = stmt.options(
            selectinload(Run.preferences), selectinload(Run.jobs).selectinload(Job.preferences)
        )
    return session.scalar(stmt)


def list_runs(session: Session, *, user: User, offset: int, limit: int) -> tuple[list[Run], int]:
    """A page of the runs ``user`` may see, newest first, and their total count."""
    count = session.scalar(_visible(select(func.count(Run.id)), user)) or 0
    stmt = (
        _visible(select(Run), user)
        .options(selectinload(Run.jobs).selectinload(Job.preferences), selectinload(Run.owner))
        .order_by(Run.created_at.desc(), Run.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list(session.scalars(stmt)), count


def create_run(
    session: Session,
    *,
    owner: User,
    name: str,
    problem: str,
    problem_options: dict[str, Any],
    method: str,
    hyperparameters: dict[str, Any],
    training: dict[str, Any],
    seed: int,
    n_tasks: int,
    task_names: Sequence[str],
    vectors: Sequence[Sequence[float]],
    epochs: int,
    max_attempts: int,
) -> Run:
    """Insert a run and enqueue one job training all of its preference vectors."""
    run = Run(
        owner=owner,
        name=name,
        problem=problem,
        problem_options=problem_options,
        method=method,
        hyperparameters=hyperparameters,
        training=training,
        seed=seed,
        n_tasks=n_tasks,
        task_names=list(task_names),
        status="queued",
    )
    session.add(run)
    session.flush()
    queue.enqueue(
        session,
        run=run,
        preferences=[list(map(float, v)) for v in vectors],
        epochs=epochs,
        max_attempts=max_attempts,
    )
    session.flush()
    return run


def active_run_count(session: Session, *, user: User) -> int:
    """Runs of ``user`` that are queued or running (what ``PMTL_MAX_ACTIVE_RUNS_PER_USER``
    limits)."""
    stmt = select(func.count(Run.id)).where(
        Run.owner_id == user.id, Run.status.in_(("queued", "running"))
    )
    return session.scalar(stmt) or 0


def checkpointed_job_ids(session: Session, *, run_id: int) -> set[int]:
    """Jobs of a run that have at least one checkpoint artifact."""
    stmt = select(Artifact.job_id).where(Artifact.run_id == run_id, Artifact.kind == "checkpoint")
    return set(session.scalars(stmt.distinct()))


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)


def nearest_by_angle(
    vector: Sequence[float], candidates: Sequence[Preference]
) -> Preference | None:
    """The candidate whose vector makes the smallest angle with ``vector`` (ties: lowest index)."""
    best: Preference | None = None
    best_cos = -math.inf
    for pref in sorted(candidates, key=lambda p: p.index):
        cos = _cosine(vector, pref.vector)
        if cos > best_cos + 1e-12:
            best, best_cos = pref, cos
    return best


def add_preferences(
    session: Session,
    *,
    run: Run,
    vectors: Sequence[Sequence[float]],
    epochs: int,
    max_attempts: int,
    warm_startable: bool,
) -> Job:
    """Enqueue one job for new preference vectors, warm-started from checkpointed neighbours.

    For each new vector the nearest (by angle) existing preference whose job has a checkpoint
    is chosen; when the method is warm-startable it is recorded as ``warm_start`` on the job
    (new preference id → neighbour id) and as ``warm_started_from`` on the preference.
    ``ValueError`` if the run was cancelled (it takes no new jobs).

    The caller holds the run lock (:func:`backend.app.queue.lock_run`) since before it read
    ``run``, so the run's state, preferences and indices cannot change under it; the cancel
    flag is checked again under the lock by :func:`backend.app.queue.enqueue`.
    """
    if run.cancel_requested:
        raise ValueError(f"run {run.id} was cancelled; it takes no new jobs")
    existing = list(run.preferences)
    ready = checkpointed_job_ids(session, run_id=run.id)
    candidates = [p for p in existing if p.job_id in ready]
    start = max((p.index for p in existing), default=-1) + 1
    rows = [
        Preference(run=run, index=start + i, vector=[float(x) for x in v])
        for i, v in enumerate(vectors)
    ]
    warm_start: dict[str, int] = {}
    if warm_startable:
        for pref in rows:
            neighbour = nearest_by_angle(pref.vector, candidates)
            if neighbour is not None:
                warm_start[str(pref.index)] = neighbour.id
    with session.no_autoflush:
        session.add_all(rows)
        return queue.enqueue(
            session,
            run=run,
            preferences=rows,
            epochs=epochs,
            max_attempts=max_attempts,
            warm_start=warm_start or None,
        )


def metric_page(session: Session, *, run_id: int, after: int, limit: int) -> tuple[list[Any], bool]:
    """Metric points of a run with ``seq > after`` in seq order (plain rows, no ORM objects:
    this is the hot polling path), and whether more follow."""
    t = MetricPoint.__table__
    stmt = (
        select(
            t.c.seq, t.c.preference_id, t.c.epoch, t.c.split, t.c.losses, t.c.metrics, t.c.wall_time
        )
        .where(t.c.run_id == run_id, t.c.seq > after)
        .order_by(t.c.seq)
        .limit(limit + 1)
    )
    rows = list(session.execute(stmt))
    return rows[:limit], len(rows) > limit


def run_metric_points(session: Session, *, run_id: int, split: str) -> list[LatestPoint]:
    """Every point of one split of a run, as (preference, epoch, losses, wall time)."""
    stmt = select(
        MetricPoint.preference_id, MetricPoint.epoch, MetricPoint.losses, MetricPoint.wall_time
    ).where(MetricPoint.run_id == run_id, MetricPoint.split == split)
    return [LatestPoint(p, e, tuple(losses), w) for p, e, losses, w in session.execute(stmt)]


def latest_metric_points(
    session: Session, *, run_ids: Sequence[int], split: str
) -> dict[int, dict[int, MetricPoint]]:
    """Per run, per preference, the newest point of ``split`` (one query for many runs)."""
    if not run_ids:
        return {}
    newest = (
        select(MetricPoint.preference_id, func.max(MetricPoint.epoch).label("epoch"))
        .where(MetricPoint.run_id.in_(run_ids), MetricPoint.split == split)
        .group_by(MetricPoint.preference_id)
        .subquery()
    )
    stmt = select(MetricPoint).join(
        newest,
        and_(
            MetricPoint.preference_id == newest.c.preference_id,
            MetricPoint.epoch == newest.c.epoch,
            MetricPoint.split == split,
        ),
    )
    out: dict[int, dict[int, MetricPoint]] = {}
    for point in session.scalars(stmt):
        out.setdefault(point.run_id, {})[point.preference_id] = point
    return out
