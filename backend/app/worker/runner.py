"""One claimed job, supervised: its training (local process or Ray task), lease and fenced writes.

``JobRunner(ctx, claim, device, granted_at, training).run()`` plans the job from the database
(:mod:`.plan`), starts its training through an executor's :class:`.executors.Training` handle,
keeps the lease alive from a heartbeat thread (:mod:`.lease`), writes the training's typed
events through the claim's fenced writes and ends the job (finished, failed, released or
abandoned). A checkpoint row is recorded only after the metric points of its epoch, so
resuming from any recorded checkpoint never skips an epoch whose points are missing.

On cancel (and on shutdown) the training is asked to stop between two batches with its last
checkpoint on disk, and is killed after a grace period if it does not; on a lost lease it is
killed at once, because a training that no longer holds the job must not write into the job's
checkpoint directory any more. Every renewal is also passed on to the training, which exits by
itself after a lease without one.

A job given up because the database could not be reached for the lease's lifetime has its
attempt given back (:func:`backend.app.queue.refund_attempt`) once the database answers again:
only failures of the training count against ``max_attempts``. A job whose problem is a dotted
import path fails at once unless the worker allows such problems (``PMTL_ALLOW_DOTTED_PROBLEMS``).
"""

from __future__ import annotations

import dataclasses
import logging
import queue as stdlib_queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from backend.app import queue
from backend.app.queue.progress import ProgressIn, record_progress
from backend.app.storage import ArtifactStore
from backend.app.worker.executors import EventQueue, Training
from backend.app.worker.lease import DB_ERRORS, GiveUp, HeartbeatLease, retry
from backend.app.worker.plan import Plan, load_plan
from backend.app.worker.protocol import (
    OUTCOMES,
    CheckpointEvent,
    DivergenceEvent,
    EpochEvent,
    ErrorEvent,
    Event,
    FinishedEvent,
    ProgressEvent,
    StartEvent,
    StoppedEvent,
)

__all__ = ["KILL_GRACE", "JobContext", "JobRunner"]

log = logging.getLogger("backend.app.worker")

#: Seconds between a stop request and a kill when a training is asked to stop.
KILL_GRACE = 5.0


@dataclass
class JobContext:
    """What every job of one supervisor shares: database, artifact store, timings, stop flag."""

    factory: sessionmaker[Session]
    store: ArtifactStore
    lease_seconds: float
    heartbeat_seconds: float
    poll_seconds: float
    stop: threading.Event
    grace: float = KILL_GRACE
    download_data: bool = False
    allow_dotted_problems: bool = False
    #: seconds one attempt of a job may train before it is stopped and failed (0: no limit)
    wall_clock_limit: float = 0.0
    #: least seconds between two in-epoch progress reports of the training side
    progress_seconds: float = 2.0


class JobRunner:
    """Runs one claimed job to an outcome: finished, failed (retry), cancelled, released, lost."""

    def __init__(
        self,
        ctx: JobContext,
        claim: queue.Lease,
        device: str,
        granted_at: float,
        training: Training | None = None,
    ) -> None:
        # Every database call of this job goes through the context's session factory.
        claim = dataclasses.replace(claim, factory=ctx.factory)
        if training is None:
            from backend.app.worker.executors.local import LocalTraining

            training = LocalTraining(device)
        self.ctx = ctx
        self.claim = claim
        self.device = device
        self.training = training
        self.lease = HeartbeatLease(
            claim,
            granted_at,
            lease_seconds=ctx.lease_seconds,
            heartbeat_seconds=ctx.heartbeat_seconds,
        )
        self.events: EventQueue = stdlib_queue.Queue()
        self.started = False
        self.plan: Plan | None = None
        self.outcome: Event | None = None  # the training's finished/stopped/error event
        self.metrics_through = 0
        self.pending: list[CheckpointEvent] = []  # checkpoints waiting for their epoch's points
        #: recorded checkpoints to keep (from the training's ``start``); older ones are deleted
        self.keep_checkpoints: int | None = None
        self.stopping: str | None = None  # "cancel" | "shutdown" | "timeout" once asked
        self.started_at = 0.0
        self.kill_at = 0.0

    # .................................................................. main line

    def run(self) -> str:
        """Run the job; returns what happened to it."""
        job = self.claim.job_id
        self.lease.start()
        try:
            result = self._run()
        except GiveUp as reason:
            self._kill()
            log.warning("job %s abandoned: %s", job, reason)
            result = "abandoned"
        except Exception as error:  # never let one job take the supervisor down
            self._kill()
            log.exception("job %s: supervisor error", job)
            result = self._end(self.claim.fail, f"worker error: {type(error).__name__}: {error}")
        finally:
            self._kill()
            self.lease.close()
            if self.started:
                self.training.close()
        if result in ("abandoned", "lost") and self.lease.lost_to_outage:
            self._refund()
        log.info("job %s (attempt %d): %s", job, self.claim.attempts, result)
        return result

    def _refund(self) -> None:
        """The lease ran out while the database was unreachable: once it answers again, give
        the claim's attempt back (the training did not fail)."""
        job = self.claim.job_id
        try:
            refunded = retry(None, self.ctx.stop, self.claim.refund_attempt)
        except DB_ERRORS as error:  # stopping while the database is still away
            log.warning("job %s: could not give back the attempt (%s)", job, error)
            return
        if refunded:
            log.info("job %s: the database outage did not count as an attempt", job)

    def _run(self) -> str:
        ctx, claim = self.ctx, self.claim
        device = self.training.device
        self.plan = retry(self.lease, ctx.stop, lambda: load_plan(ctx, claim, device))
        problem = self.plan.spec.problem
        if ":" in problem and not ctx.allow_dotted_problems:
            # Code named by a database row is not imported unless the operator said so.
            log.warning("job %s: refusing the dotted-path problem %r", claim.job_id, problem)
            return self._end(
                self.claim.fail,
                f"problem {problem!r} is a dotted import path (package.module:factory); this "
                "worker does not import code named in the database. An operator who trusts "
                "the database can allow it with PMTL_ALLOW_DOTTED_PROBLEMS=true.",
                retry=False,
            )
        Path(self.plan.spec.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        self.started = True
        self.training.start(self.plan.spec, self.events)
        self.started_at = time.monotonic()
        self.lease.on_renewed = self.training.renewed
        eof = False
        while True:
            try:
                event: Event | bool | None = self.events.get(timeout=0.2)
            except stdlib_queue.Empty:
                event = False
            if event is None:
                eof = True
            elif event is not False:
                self._handle(event)  # type: ignore[arg-type]
            self.lease.check()
            self._maybe_stop()
            if eof and self.training.poll() is not None:
                break
        self._flush_pending(final=True)
        return self._conclude(self.training.poll() or 0)

    def _maybe_stop(self) -> None:
        if self.stopping is None and self.outcome is None:
            reason = (
                "cancel" if self.lease.cancel else "shutdown" if self.ctx.stop.is_set() else None
            )
            limit = self.ctx.wall_clock_limit
            if reason is None and limit and time.monotonic() - self.started_at > limit:
                reason = "timeout"
            if reason is not None and self.started and self.training.poll() is None:
                log.info("job %s: stopping the training (%s)", self.claim.job_id, reason)
                self.stopping = reason
                self.kill_at = time.monotonic() + self.ctx.grace
                self.training.terminate()
        if self.kill_at and time.monotonic() > self.kill_at:
            self._kill()

    def _kill(self) -> None:
        if self.started:
            self.training.kill()

    # .................................................................. events

    def _write(self, call: Callable[[], Any]) -> Any:
        """A fenced write, retried through outages; False from the queue means lease lost."""
        result = retry(self.lease, self.ctx.stop, call)
        if result is False or result is None:
            self.lease.lost = True
            raise GiveUp(f"lease of job {self.claim.job_id} taken over; write rejected")
        return result

    def _handle(self, event: Event) -> None:
        claim = self.claim
        assert self.plan is not None
        ids = self.plan.preference_ids
        if isinstance(event, StartEvent):
            resume = event.resume_epoch
            self.metrics_through = resume
            if event.keep_checkpoints is not None:
                self.keep_checkpoints = max(event.keep_checkpoints, 1)
            stale = [row for epoch, (row, _) in self.plan.checkpoints.items() if epoch > resume]
            if stale:
                self._write(lambda: claim.drop_artifacts(stale))
                self.plan.checkpoints = {
                    e: v for e, v in self.plan.checkpoints.items() if e <= resume
                }
            if resume:
                log.info("job %s: resuming after epoch %d", claim.job_id, resume)
        elif isinstance(event, EpochEvent):
            points = [
                queue.MetricIn(
                    preference_id=ids[p.index],
                    epoch=event.epoch,
                    split=p.split,
                    losses=p.losses,
                    metrics=p.metrics,
                    wall_time=event.wall_time,
                )
                for p in event.points
            ]
            self._write(lambda: claim.record_metrics(points))
            self.metrics_through = max(self.metrics_through, event.epoch)
            self._flush_pending()
        elif isinstance(event, ProgressEvent):
            self._record_progress(event)
        elif isinstance(event, CheckpointEvent):
            self.pending.append(event)
            self._flush_pending()
        elif isinstance(event, DivergenceEvent):
            pref = ids[event.index]
            self._write(lambda: claim.record_divergence(pref, event.epoch))
        elif isinstance(event, OUTCOMES):
            self.outcome = event
        else:  # pragma: no cover - the protocol's union is closed
            log.warning("job %s: unknown event %r", claim.job_id, event)

    def _record_progress(self, event: ProgressEvent) -> None:
        """Store in-epoch progress: one fenced UPDATE, tried once (a newer event follows soon,
        so an outage skips it rather than holding up the epoch's points); fenced out means
        the lease is lost, as for every other write."""
        claim = self.claim
        progress = ProgressIn(
            epoch=event.epoch,
            batch=event.batch,
            batches=event.batches,
            unit=event.unit,
            batches_per_s=event.batches_per_s,
            samples_per_s=event.samples_per_s,
            epoch_seconds=event.epoch_seconds,
        )
        try:
            held = record_progress(self.ctx.factory, claim.job_id, claim.lease_token, progress)
        except DB_ERRORS as error:
            log.debug("job %s: progress not recorded (%s)", claim.job_id, error)
            return
        if not held:
            self.lease.lost = True
            raise GiveUp(f"lease of job {claim.job_id} taken over; write rejected")

    def _flush_pending(self, *, final: bool = False) -> None:
        """Record checkpoints whose epoch's points are stored; at the end drop the rest."""
        ready = [c for c in self.pending if c.epoch <= self.metrics_through]
        self.pending = [] if final else [c for c in self.pending if c not in ready]
        for event in ready:
            self._record_checkpoint(event)

    def _record_checkpoint(self, event: CheckpointEvent) -> None:
        assert self.plan is not None
        path, epoch = Path(event.path), event.epoch
        rel = self.ctx.store.relative(path)
        row = self._write(
            lambda: self.claim.record_artifact(
                kind="checkpoint", epoch=epoch, path=rel, sha256=event.sha256, size=event.size
            )
        )
        self.plan.checkpoints[epoch] = (row, path)
        self._prune_checkpoints()

    def _prune_checkpoints(self) -> None:
        """Delete checkpoints older than the newest ``keep_checkpoints`` recorded ones.

        The training never deletes checkpoints: it runs ahead of this supervisor, so it could
        delete every file the database knows of. Here a file goes only once newer checkpoints
        are recorded, and only after its row was dropped by a fenced write: a supervisor that
        lost its lease deletes nothing (the directory may be another holder's by then). Rows
        whose file is gone anyway are dropped too.
        """
        assert self.plan is not None
        recorded = self.plan.checkpoints
        missing = {e for e, (_, p) in recorded.items() if not p.exists()}
        present = sorted(e for e in recorded if e not in missing)
        old = set() if self.keep_checkpoints is None else set(present[: -self.keep_checkpoints])
        drop = sorted(missing | old)
        if not drop:
            return
        ids = [recorded[e][0] for e in drop]
        self._write(lambda: self.claim.drop_artifacts(ids))
        for e in drop:
            _, path = recorded.pop(e)
            if e in old:
                path.unlink(missing_ok=True)

    # .................................................................. outcome

    def _end(self, transition: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
        """End the lease with one of the claim's transitions (``self.claim.finish`` …)."""
        job = self.claim.job_id
        try:
            result = retry(self.lease, self.ctx.stop, lambda: transition(*args, **kwargs))
        except GiveUp as reason:
            log.warning("job %s: %s", job, reason)
            return "abandoned"
        if result is False or result is None:
            return "lost"
        return result if isinstance(result, str) else transition.__name__

    def _conclude(self, status: int) -> str:
        outcome = self.outcome
        if isinstance(outcome, FinishedEvent) and status == 0:
            return self._end(self.claim.finish)
        if self.stopping == "timeout":
            limit = self.ctx.wall_clock_limit
            return self._end(
                self.claim.fail,
                f"stopped after the job's wall-clock limit of {limit:g} s "
                "(PMTL_JOB_WALL_CLOCK_LIMIT_S); not retried",
                retry=False,
            )
        if self.stopping == "cancel" or (self.lease.cancel and not isinstance(outcome, ErrorEvent)):
            return self._end(self.claim.cancel_running)
        if self.stopping == "shutdown" and (outcome is None or isinstance(outcome, StoppedEvent)):
            return self._end(self.claim.release)
        if isinstance(outcome, ErrorEvent):
            # The whole traceback is for the operator's log; the run's owner gets the error
            # itself (type and message; queue.fail strips paths and host names).
            log.warning(
                "job %s: training failed: %s\n%s",
                self.claim.job_id,
                outcome.message,
                outcome.traceback,
            )
            return self._end(self.claim.fail, outcome.message or "error")
        return self._end(self.claim.fail, f"{self.training.describe(status)} without finishing")
