"""In-epoch progress of a running job: one fenced UPDATE of ``jobs.progress``, no history.

The supervisor calls :func:`record_progress` a few times a minute per job (the training side
throttles its progress events). The write is fenced like every worker write, but by its own
``WHERE`` clause alone (job ``running`` under the caller's ``lease_token``): it touches one
column of one row, so it needs neither the run lock nor a separate check. The stored value
carries the lease token it was written under; readers (:mod:`backend.app.live`) ignore a
value from an earlier claim or of a job that is no longer running, so it is never cleared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import update

from backend.app.db.models import Job, utcnow
from backend.app.queue.transactions import SessionFactory, _fenced, _write

__all__ = ["ProgressIn", "record_progress"]


@dataclass(frozen=True)
class ProgressIn:
    """Where a job's training is inside ``epoch`` (see the protocol's ``ProgressEvent``)."""

    epoch: int
    batch: int
    batches: int
    unit: str = "batch"
    batches_per_s: float | None = None
    samples_per_s: float | None = None
    epoch_seconds: float | None = None


def _rate(value: float | None) -> float | None:
    """A positive finite number or None (JSON-safe)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


def record_progress(
    session_factory: SessionFactory, job_id: int, lease_token: int, progress: ProgressIn
) -> bool:
    """Store the job's in-epoch progress if the caller holds the lease; False if fenced out."""
    value = {
        "lease_token": int(lease_token),
        "epoch": int(progress.epoch),
        "batch": int(progress.batch),
        "batches": int(progress.batches),
        "unit": "step" if progress.unit == "step" else "batch",
        "batches_per_s": _rate(progress.batches_per_s),
        "samples_per_s": _rate(progress.samples_per_s),
        "epoch_seconds": _rate(progress.epoch_seconds),
        "updated_at": utcnow().isoformat(),
    }
    with _write(session_factory) as session:
        result = session.execute(
            update(Job)
            .where(*_fenced(job_id, lease_token))
            .values(progress=value)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
