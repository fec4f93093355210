"""The live state of runs and jobs, computed in one place: in-epoch progress and queue places.

In-epoch progress comes from ``jobs.progress`` (written by the supervisor, see
:mod:`backend.app.queue.progress`). It is shown only while it is current: the job is
``running`` under the lease token the value was written with, and its epoch is after the
job's last recorded epoch (the one the metric points, hence the charts, have reached). So a
finished, failed, cancelled or re-queued job, or an epoch already on the chart, never shows a
stale batch count. Time estimates are counted from the API's clock: the time since the report
is taken off.

Queue places replay the queue's fair claim rule (:func:`backend.app.queue.positions
.claim_sequence`); :class:`QueueView` is loaded once per request, only when a run in the
response has a queued job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.app.api.schemas import EpochProgress, QueuePlace
from backend.app.db.models import Job, Run, utcnow
from backend.app.queue.positions import claim_sequence

__all__ = ["QueueView", "job_progress", "run_in_epoch"]


def _when(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _positive(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None


def job_progress(job: Job, now: datetime | None = None) -> EpochProgress | None:
    """The job's current in-epoch progress, or None when there is none to trust."""
    raw = job.progress
    if job.state != "running" or not isinstance(raw, dict):
        return None
    if raw.get("lease_token") != job.lease_token or int(raw.get("epoch", 0)) <= job.epoch:
        return None
    updated = _when(raw.get("updated_at"))
    batches = int(raw.get("batches") or 0)
    if updated is None or batches <= 0:
        return None
    epoch, batch = int(raw["epoch"]), min(int(raw.get("batch") or 0), batches)
    rate, samples = _positive(raw.get("batches_per_s")), _positive(raw.get("samples_per_s"))
    epoch_seconds = _positive(raw.get("epoch_seconds"))
    age = max(0.0, ((now or utcnow()) - updated).total_seconds())
    if rate is not None:
        left: float | None = max(0.0, (batches - batch) / rate - age)
    elif epoch_seconds is not None:
        left = max(0.0, epoch_seconds * (1 - batch / batches) - age)
    else:
        left = None
    job_left = None
    if left is not None and epoch_seconds is not None:
        job_left = left + max(0, job.epochs - epoch) * epoch_seconds
    return EpochProgress(
        epoch=epoch,
        batch=batch,
        batches=batches,
        unit="step" if raw.get("unit") == "step" else "batch",
        fraction=batch / batches,
        samples_per_s=samples,
        batches_per_s=rate,
        seconds_left=left,
        job_seconds_left=job_left,
        updated_at=updated,
    )


def run_in_epoch(jobs: Iterable[Job], now: datetime | None = None) -> EpochProgress | None:
    """In-epoch progress of the run's slowest running job (the one the run's epoch waits for)."""
    now = now or utcnow()
    current = [p for p in (job_progress(j, now) for j in jobs) if p is not None]
    return min(current, key=lambda p: (p.epoch, p.fraction), default=None)


@dataclass(frozen=True)
class QueueView:
    """The queue as one request sees it: claim places of queued jobs and the running jobs."""

    positions: dict[int, int]
    running_run_ids: tuple[int, ...]

    @classmethod
    def load(cls, session: Session, runs: Sequence[Run]) -> QueueView | None:
        """Read the queue, or None when no run of ``runs`` has a queued job (nothing to say)."""
        if not any(j.state == "queued" for run in runs for j in run.jobs):
            return None
        order = claim_sequence(session)
        running = session.scalars(select(Job.run_id).where(Job.state == "running")).all()
        return cls({job_id: i + 1 for i, job_id in enumerate(order)}, tuple(running))

    def job_position(self, job: Job) -> int | None:
        """The job's 1-based claim place, None unless it is queued and claimable."""
        return self.positions.get(job.id) if job.state == "queued" else None

    def run_place(self, run: Run) -> QueuePlace | None:
        """Where the run's first claimable queued job stands; None if it has none."""
        places = [p for p in (self.job_position(j) for j in run.jobs) if p is not None]
        if not places:
            return None
        return QueuePlace(
            position=min(places),
            queued=len(self.positions),
            running_jobs=len(self.running_run_ids),
            running_run_ids=sorted(set(self.running_run_ids)),
        )
