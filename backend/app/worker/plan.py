"""The plan of one claimed job: its :class:`JobSpec` built from the database, and the ids behind it.

The spec names the job's recorded checkpoints (the training side resumes from the newest whose
SHA-256 matches) and, for warm-started preferences, the neighbour job's checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.app import queue
from backend.app.datasets import resolve_dataset_options
from backend.app.db.models import Artifact, Job, Preference, Run
from backend.app.db.session import session_scope
from backend.app.storage import ArtifactStore
from backend.app.worker.lease import GiveUp
from backend.app.worker.protocol import CheckpointRef, InitSource, JobSpec

if TYPE_CHECKING:
    from backend.app.worker.runner import JobContext

__all__ = ["Plan", "load_plan"]


@dataclass
class Plan:
    """What the supervisor knows about its job: the spec and the ids behind stack positions."""

    spec: JobSpec
    preference_ids: list[int]
    checkpoints: dict[int, tuple[int, Path]] = field(default_factory=dict)  # epoch → (row, file)


@dataclass(frozen=True)
class _CheckpointRow:
    id: int
    ref: CheckpointRef


def _checkpoint_rows(session: Session, store: ArtifactStore, job_id: int) -> list[_CheckpointRow]:
    rows = session.scalars(
        select(Artifact)
        .where(Artifact.job_id == job_id, Artifact.kind == "checkpoint")
        .order_by(Artifact.epoch.desc())
    )
    return [
        _CheckpointRow(
            a.id, CheckpointRef(epoch=a.epoch, path=str(store.resolve(a.path)), sha256=a.sha256)
        )
        for a in rows
    ]


def load_plan(ctx: JobContext, claim: queue.Lease, device: str) -> Plan:
    """Read the job, its run and checkpoints; the spec trains on ``device`` (as seen there)."""
    with session_scope(ctx.factory) as session:
        run = session.get(Run, claim.run_id)
        job = session.get(Job, claim.job_id)
        if run is None or job is None:
            raise GiveUp(f"job {claim.job_id} or its run is gone")
        prefs = sorted(job.preferences, key=lambda p: p.position)
        everyone = sorted(run.preferences, key=lambda p: p.index)
        own = _checkpoint_rows(session, ctx.store, job.id)
        warm = {str(k): int(v) for k, v in (job.warm_start or {}).items()}
        init_from: list[InitSource | None] = []
        for pref in prefs:
            neighbour_id = pref.warm_started_from or warm.get(str(pref.id))
            neighbour = session.get(Preference, neighbour_id) if neighbour_id else None
            if neighbour is None or neighbour.job_id == job.id:
                init_from.append(None)
                continue
            rows = _checkpoint_rows(session, ctx.store, neighbour.job_id)
            init_from.append(
                InitSource(position=neighbour.position, checkpoints=[r.ref for r in rows])
            )
        spec = JobSpec(
            job_id=job.id,
            run_id=run.id,
            problem=run.problem,
            problem_options=resolve_dataset_options(run.problem, run.problem_options, ctx.store),
            method=run.method,
            hyperparameters=run.hyperparameters or {},
            training=run.training or {},
            seed=run.seed,
            epochs=job.epochs,
            device=device,
            lease_seconds=ctx.lease_seconds,
            progress_seconds=ctx.progress_seconds,
            download_data=ctx.download_data,
            allow_dotted_problems=ctx.allow_dotted_problems,
            preferences=[list(p.vector) for p in prefs],
            all_preferences=[list(p.vector) for p in everyone],
            checkpoint_dir=str(ctx.store.checkpoint_dir(run.id, job.id)),
            checkpoints=[r.ref for r in own],
            init_from=init_from,
            meta={
                "problem_options": run.problem_options or {},
                "run_id": run.id,
                "job_id": job.id,
                "preference_ids": [p.id for p in prefs],
            },
        )
        return Plan(
            spec=spec,
            preference_ids=[p.id for p in prefs],
            checkpoints={r.ref.epoch: (r.id, Path(r.ref.path)) for r in own},
        )
