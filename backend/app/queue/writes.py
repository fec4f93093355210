"""Fenced writes: metric points, artifact rows and divergence marks, only under a held lease.

Each write checks in its own transaction that the job is still ``running`` under the caller's
``lease_token`` (on PostgreSQL the check locks the job row ``FOR SHARE``), so a worker whose
lease was reaped or taken over writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from backend.app.db.models import Artifact, Job, MetricPoint, Preference, utcnow
from backend.app.queue.transactions import (
    SessionFactory,
    _fenced,
    _insert_ignoring_duplicates,
    _lock_run,
    _write,
)

__all__ = ["MetricIn", "drop_artifacts", "record_artifact", "record_divergence", "record_metrics"]


@dataclass(frozen=True)
class MetricIn:
    """One metric point to store: losses and metrics of one preference at one epoch and split."""

    preference_id: int
    epoch: int
    split: str
    losses: Sequence[float]
    metrics: dict[str, Sequence[float]] = field(default_factory=dict)
    wall_time: float = 0.0


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
