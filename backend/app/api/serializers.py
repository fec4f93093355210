"""Table rows → response shapes of :mod:`backend.app.api.schemas` (no queries here)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from backend.app.api.live import QueueView, job_progress, run_in_epoch
from backend.app.api.schemas import (
    FrontPoint,
    JobPublic,
    MetricPointPublic,
    PreferencePublic,
    Progress,
    RunDetail,
    RunPublic,
)
from backend.app.db.models import Job, MetricPoint, Preference, Run, utcnow

__all__ = ["job_public", "metric_point_public", "preference_public", "progress", "run_detail"]

_UNFINISHED = ("queued", "running")


def progress(jobs: Sequence[Job], now: datetime | None = None) -> Progress:
    """Job counts by state, the epoch reached by the slowest unfinished job and where the
    slowest running job is inside its epoch."""
    unfinished = [j.epoch for j in jobs if j.state in _UNFINISHED]
    epoch = min(unfinished) if unfinished else max((j.epoch for j in jobs), default=0)
    return Progress(
        jobs_total=len(jobs),
        jobs_finished=sum(j.state == "finished" for j in jobs),
        jobs_failed=sum(j.state == "failed" for j in jobs),
        jobs_running=sum(j.state == "running" for j in jobs),
        epoch=epoch,
        epochs=max((j.epochs for j in jobs), default=0),
        in_epoch=run_in_epoch(jobs, now),
    )


def run_public(
    run: Run,
    hypervolume: float | None,
    queue: QueueView | None = None,
    now: datetime | None = None,
) -> RunPublic:
    """The summary of a run shown in lists (``queue``: the request's view of the queue;
    ``now``: the moment time estimates are counted from)."""
    jobs = list(run.jobs)
    return RunPublic(
        id=run.id,
        name=run.name,
        owner=run.owner.name,
        problem=run.problem,
        method=run.method,
        status=run.status,
        n_tasks=run.n_tasks,
        task_names=list(run.task_names),
        n_preferences=sum(len(j.preferences) for j in jobs),
        seed=run.seed,
        problem_options=run.problem_options,
        hyperparameters=run.hyperparameters,
        training=run.training,
        progress=progress(jobs, now),
        hypervolume=hypervolume,
        queue=None if queue is None else queue.run_place(run),
        created_at=run.created_at,
        updated_at=run.updated_at,
    )


def job_public(job: Job, queue: QueueView | None = None, now: datetime | None = None) -> JobPublic:
    """One job with the ids of the preferences it trains and its live state."""
    return JobPublic(
        id=job.id,
        state=job.state,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        epoch=job.epoch,
        epochs=job.epochs,
        device=job.device,
        worker=job.worker,
        error=job.error,
        preference_ids=[p.id for p in job.preferences],
        warm_start=job.warm_start,
        progress=job_progress(job, now),
        queue_position=None if queue is None else queue.job_position(job),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def preference_public(pref: Preference) -> PreferencePublic:
    """One preference vector with its job's state and epoch."""
    return PreferencePublic(
        id=pref.id,
        index=pref.index,
        vector=list(pref.vector),
        job_id=pref.job_id,
        status=pref.job.state,
        epoch=pref.job.epoch,
        diverged=pref.diverged,
        warm_started_from=pref.warm_started_from,
    )


def run_detail(run: Run, hypervolume: float | None, queue: QueueView | None = None) -> RunDetail:
    """A run with its preferences and jobs."""
    now = utcnow()  # one moment for the run's and its jobs' estimates: they agree
    summary = run_public(run, hypervolume, queue, now)
    return RunDetail(
        **summary.model_dump(),
        preferences=[preference_public(p) for p in run.preferences],
        jobs=[job_public(j, queue, now) for j in run.jobs],
    )


def metric_point_public(point: MetricPoint | Any) -> MetricPointPublic:
    """One stored metric point (an ORM object or a row with the same columns)."""
    return MetricPointPublic(
        seq=point.seq,
        preference_id=point.preference_id,
        epoch=point.epoch,
        split=point.split,
        losses=list(point.losses),
        metrics=point.metrics or {},
        wall_time=point.wall_time,
    )


def front_point(
    pref: Preference, point: MetricPoint, *, non_dominated: bool, downloadable: bool
) -> FrontPoint:
    """One preference's newest point on the front."""
    return FrontPoint(
        preference_id=pref.id,
        vector=list(pref.vector),
        epoch=point.epoch,
        status=pref.job.state,
        losses=list(point.losses),
        metrics=point.metrics or {},
        non_dominated=non_dominated,
        downloadable=downloadable,
    )
