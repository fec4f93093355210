"""One claimed job, supervised: its training process, its lease and its fenced writes.

``JobRunner(ctx, claim, device, granted_at).run()`` plans the job from the database (spec,
own checkpoints, warm-start sources), starts ``python -m backend.app.worker_child`` for the
device, keeps the lease alive from a heartbeat thread, writes the child's events through the
queue's fenced calls and ends the job (finished, failed, released or abandoned). The slots of
:mod:`backend.app.worker` run one of these at a time; see that module for the whole picture.

A job given up because the database could not be reached for the lease's lifetime has its
attempt given back (:func:`backend.app.queue.refund_attempt`) once the database answers again:
only failures of the training count against ``max_attempts``. A job whose problem is a dotted
import path fails at once unless the worker allows such problems (``PMTL_ALLOW_DOTTED_PROBLEMS``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue as stdlib_queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from backend.app import queue
from backend.app.db.models import Artifact, Job, Preference, Run
from backend.app.db.session import DatabaseError, session_scope
from backend.app.storage import ArtifactStore

__all__ = ["DB_ERRORS", "JobContext", "JobRunner", "backoff", "child_environment"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Errors that mean "the database is unavailable right now": retried, never fatal.
DB_ERRORS = (DatabaseError, SQLAlchemyError)
#: Seconds between SIGTERM and SIGKILL when a child is asked to stop.
KILL_GRACE = 5.0
#: Largest pause between two attempts of a failing database call.
MAX_BACKOFF = 5.0


def child_environment(
    device: str, base: dict[str, str] | None = None
) -> tuple[dict[str, str], str]:
    """The environment of a training process for ``device`` and the device it then uses.

    A GPU slot sees only its GPU (``CUDA_VISIBLE_DEVICES`` maps ``cuda:N`` of this process,
    honouring an inherited mask) and trains on ``cuda:0``; a CPU slot sees no GPU at all.
    """
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        return env, "cpu"
    index = int(device.split(":")[1])
    inherited = [v.strip() for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    env["CUDA_VISIBLE_DEVICES"] = inherited[index] if index < len(inherited) else str(index)
    return env, "cuda:0"


# ---------------------------------------------------------------- context and retries


@dataclass
class JobContext:
    factory: sessionmaker[Session]
    store: ArtifactStore
    lease_seconds: float
    heartbeat_seconds: float
    poll_seconds: float
    stop: threading.Event
    grace: float = KILL_GRACE
    download_data: bool = False
    allow_dotted_problems: bool = False


class _GiveUp(Exception):
    """The lease is lost or certainly expired: abandon the job without writing anything."""


def backoff(first: float = 0.2) -> Iterator[float]:
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, MAX_BACKOFF)


# ---------------------------------------------------------------- the lease


class _Lease:
    """The lease of one claimed job, renewed by a heartbeat thread."""

    def __init__(self, ctx: JobContext, claim: queue.Claim, granted_at: float) -> None:
        self.ctx = ctx
        self.claim = claim
        self.valid_until = granted_at + ctx.lease_seconds
        self.lost = False
        self.cancel = False
        #: set once the lease has run out by the local clock: the job is being given up, and
        #: the heartbeat renews no more (a late renewal would keep a lease nobody uses)
        self.given_up = False
        #: monotonic time of the first database error since the last successful renewal
        self.outage_since: float | None = None
        self.on_renewed: Callable[[], None] = lambda: None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-job-{claim.job_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=self.ctx.lease_seconds + 5)

    def expired(self) -> bool:
        """Whether the lease has certainly expired (no renewal for ``lease_seconds``)."""
        return time.monotonic() >= self.valid_until

    def note_outage(self) -> None:
        """A database call failed: the lease may now run out for want of renewals."""
        if self.outage_since is None:
            self.outage_since = time.monotonic()

    @property
    def lost_to_outage(self) -> bool:
        """Whether the database was unreachable since the last successful renewal, i.e. an
        outage (not the training, nor a frozen supervisor) is why the lease ran out."""
        return self.outage_since is not None

    def check(self) -> None:
        """Raise :class:`_GiveUp` once the lease is lost or expired."""
        if self.lost:
            raise _GiveUp(f"lost the lease of job {self.claim.job_id}")
        if self.expired():
            self.given_up = True
            raise _GiveUp(f"the lease of job {self.claim.job_id} expired during an outage")

    def _beat(self) -> None:
        interval = min(self.ctx.heartbeat_seconds, self.ctx.lease_seconds / 3)
        delays = backoff()
        wait = interval
        while not self._done.wait(wait) and not self.lost:
            if self.given_up or self.expired():
                self.given_up = True
                return
            try:
                status = queue.renew_status(
                    self.ctx.factory,
                    self.claim.job_id,
                    self.claim.lease_token,
                    lease_seconds=self.ctx.lease_seconds,
                )
            except DB_ERRORS as error:
                self.note_outage()
                wait = min(next(delays), interval)
                log.warning("heartbeat of job %s failed (%s); retrying", self.claim.job_id, error)
                continue
            received = time.monotonic()
            delays, wait = backoff(), interval
            if self.given_up:  # the runner gave the job up while this renewal was in flight
                return
            if status is queue.LeaseStatus.LOST:
                log.warning("job %s: lease lost (reaped or taken over)", self.claim.job_id)
                self.lost = True
                return
            self.outage_since = None
            self.valid_until = received + self.ctx.lease_seconds
            self.on_renewed()
            if status is queue.LeaseStatus.CANCEL and not self.cancel:
                log.info("job %s: run %s was cancelled", self.claim.job_id, self.claim.run_id)
                self.cancel = True


def _retry(lease: _Lease | None, stop: threading.Event, call: Callable[[], T]) -> T:
    """``call()`` until the database answers; with a lease, give up once it is gone."""
    delays = backoff()
    while True:
        if lease is not None:
            lease.check()
        try:
            return call()
        except DB_ERRORS as error:
            if lease is not None:
                lease.note_outage()
            delay = next(delays)
            log.warning("database unavailable (%s); retrying in %.1f s", error, delay)
            if lease is None and stop.wait(delay):
                raise
            if lease is not None:
                time.sleep(min(delay, max(lease.valid_until - time.monotonic(), 0.0) + 0.01))


# ---------------------------------------------------------------- the job spec


@dataclass
class _Plan:
    """What the slot knows about its job: the child's spec and the ids behind positions."""

    spec: dict[str, Any]
    preference_ids: list[int]
    checkpoints: dict[int, tuple[int, Path]] = field(default_factory=dict)  # epoch → (row, file)


def _checkpoint_rows(session: Session, store: ArtifactStore, job_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Artifact)
        .where(Artifact.job_id == job_id, Artifact.kind == "checkpoint")
        .order_by(Artifact.epoch.desc())
    )
    return [
        {"id": a.id, "epoch": a.epoch, "path": str(store.resolve(a.path)), "sha256": a.sha256}
        for a in rows
    ]


def _load_plan(ctx: JobContext, claim: queue.Claim, device: str) -> _Plan:
    with session_scope(ctx.factory) as session:
        run = session.get(Run, claim.run_id)
        job = session.get(Job, claim.job_id)
        if run is None or job is None:
            raise _GiveUp(f"job {claim.job_id} or its run is gone")
        prefs = sorted(job.preferences, key=lambda p: p.position)
        everyone = sorted(run.preferences, key=lambda p: p.index)
        own = _checkpoint_rows(session, ctx.store, job.id)
        warm = {str(k): int(v) for k, v in (job.warm_start or {}).items()}
        init_from: list[dict[str, Any] | None] = []
        for pref in prefs:
            neighbour_id = pref.warm_started_from or warm.get(str(pref.id))
            neighbour = session.get(Preference, neighbour_id) if neighbour_id else None
            if neighbour is None or neighbour.job_id == job.id:
                init_from.append(None)
                continue
            init_from.append(
                {
                    "position": neighbour.position,
                    "checkpoints": _checkpoint_rows(session, ctx.store, neighbour.job_id),
                }
            )
        spec = {
            "job_id": job.id,
            "run_id": run.id,
            "problem": run.problem,
            "problem_options": run.problem_options or {},
            "method": run.method,
            "hyperparameters": run.hyperparameters or {},
            "training": run.training or {},
            "seed": run.seed,
            "epochs": job.epochs,
            "device": device,
            "lease_seconds": ctx.lease_seconds,
            "download_data": ctx.download_data,
            "allow_dotted_problems": ctx.allow_dotted_problems,
            "preferences": [list(p.vector) for p in prefs],
            "all_preferences": [list(p.vector) for p in everyone],
            "checkpoint_dir": str(ctx.store.checkpoint_dir(run.id, job.id)),
            "checkpoints": [{k: c[k] for k in ("epoch", "path", "sha256")} for c in own],
            "init_from": init_from,
            "meta": {
                "problem_options": run.problem_options or {},
                "run_id": run.id,
                "job_id": job.id,
                "preference_ids": [p.id for p in prefs],
            },
        }
        return _Plan(
            spec=spec,
            preference_ids=[p.id for p in prefs],
            checkpoints={c["epoch"]: (c["id"], Path(c["path"])) for c in own},
        )


# ---------------------------------------------------------------- one job


class JobRunner:
    """Runs one claimed job to an outcome: finished, failed (retry), cancelled, released, lost."""

    def __init__(self, ctx: JobContext, claim: queue.Claim, device: str, granted_at: float) -> None:
        self.ctx = ctx
        self.claim = claim
        self.device = device
        self.lease = _Lease(ctx, claim, granted_at)
        self.events: stdlib_queue.Queue[dict[str, Any] | None] = stdlib_queue.Queue()
        self.proc: subprocess.Popen[str] | None = None
        self.plan: _Plan | None = None
        self.outcome: dict[str, Any] | None = None  # the child's finished/stopped/error event
        self.metrics_through = 0
        self.pending: list[dict[str, Any]] = []  # checkpoints waiting for their epoch's points
        #: recorded checkpoints to keep (from the child's ``start``); older ones are deleted
        self.keep_checkpoints: int | None = None
        self.stopping: str | None = None  # "cancel" | "shutdown" once SIGTERM was sent
        self.kill_at = 0.0
        self.reader: threading.Thread | None = None

    # .................................................................. main line

    def run(self) -> str:
        """Run the job; returns what happened to it."""
        job = self.claim.job_id
        self.lease.start()
        try:
            result = self._run()
        except _GiveUp as reason:
            self._kill()
            log.warning("job %s abandoned: %s", job, reason)
            result = "abandoned"
        except Exception as error:  # never let one job take the supervisor down
            self._kill()
            log.exception("job %s: supervisor error", job)
            result = self._end(queue.fail, f"worker error: {type(error).__name__}: {error}")
        finally:
            self._kill()
            self.lease.close()
            self._close()
        if result in ("abandoned", "lost") and self.lease.lost_to_outage:
            self._refund()
        if self.proc is not None:
            log.info(
                "job %s: training process %d exited with status %s",
                job,
                self.proc.pid,
                self.proc.returncode,
            )
        log.info("job %s (attempt %d): %s", job, self.claim.attempts, result)
        return result

    def _refund(self) -> None:
        """The lease ran out while the database was unreachable: once it answers again, give
        the claim's attempt back (the training did not fail)."""
        f, job, token = self.ctx.factory, self.claim.job_id, self.claim.lease_token
        try:
            refunded = _retry(None, self.ctx.stop, lambda: queue.refund_attempt(f, job, token))
        except DB_ERRORS as error:  # stopping while the database is still away
            log.warning("job %s: could not give back the attempt (%s)", job, error)
            return
        if refunded:
            log.info("job %s: the database outage did not count as an attempt", job)

    def _run(self) -> str:
        ctx, claim = self.ctx, self.claim
        env, child_device = child_environment(self.device)
        self.plan = _retry(self.lease, ctx.stop, lambda: _load_plan(ctx, claim, child_device))
        problem = self.plan.spec["problem"]
        if ":" in problem and not ctx.allow_dotted_problems:
            # Code named by a database row is not imported unless the operator said so.
            log.warning("job %s: refusing the dotted-path problem %r", claim.job_id, problem)
            return self._end(
                queue.fail,
                f"problem {problem!r} is a dotted import path (package.module:factory); this "
                "worker does not import code named in the database. An operator who trusts "
                "the database can allow it with PMTL_ALLOW_DOTTED_PROBLEMS=true.",
                retry=False,
            )
        Path(self.plan.spec["checkpoint_dir"]).mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend.app.worker_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
            start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor only
        )
        log.info("job %s: training process %d on %s", claim.job_id, self.proc.pid, self.device)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(self.plan.spec) + "\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # the child died at start; its exit status says why
        self.lease.on_renewed = self._tell_child
        self.reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self.reader.start()
        eof = False
        while True:
            try:
                event = self.events.get(timeout=0.2)
            except stdlib_queue.Empty:
                event = False  # type: ignore[assignment]
            if event is None:
                eof = True
            elif event:
                self._handle(event)
            self.lease.check()
            self._maybe_stop()
            if eof and self.proc.poll() is not None:
                break
        self.reader.join(timeout=5)
        self._flush_pending(final=True)
        return self._conclude(self.proc.wait())

    def _tell_child(self) -> None:
        """Tell the child the lease was renewed (it exits after a lease without news)."""
        stream = self.proc.stdin if self.proc is not None else None
        if stream is None:
            return
        with contextlib.suppress(OSError, ValueError):  # the child is gone or going
            stream.write("renewed\n")
            stream.flush()

    def _read(self, stream: IO[str]) -> None:
        """Reader thread: the child's events onto ``self.events``, then None at end of file."""
        try:
            for line in stream:
                if not line.strip():
                    continue
                try:
                    self.events.put(json.loads(line))
                except ValueError:
                    log.warning("job %s: unreadable event %r", self.claim.job_id, line[:200])
        except (OSError, ValueError):  # the stream broke: treat as end of file
            pass
        finally:
            self.events.put(None)

    def _maybe_stop(self) -> None:
        if self.stopping is None and self.outcome is None:
            reason = (
                "cancel" if self.lease.cancel else "shutdown" if self.ctx.stop.is_set() else None
            )
            if reason is not None and self.proc is not None and self.proc.poll() is None:
                log.info("job %s: stopping the training process (%s)", self.claim.job_id, reason)
                self.stopping = reason
                self.kill_at = time.monotonic() + self.ctx.grace
                self.proc.send_signal(signal.SIGTERM)
        if self.kill_at and time.monotonic() > self.kill_at:
            self._kill()

    def _kill(self) -> None:
        """SIGKILL the child (if it still runs) and reap it."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - an unkillable process
            log.error("training process %d did not die", proc.pid)

    def _close(self) -> None:
        """Close the pipes once the heartbeat and reader threads are done with them."""
        if self.reader is not None:
            self.reader.join(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout) if self.proc is not None else ():
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()

    # .................................................................. events

    def _write(self, call: Callable[[], Any]) -> Any:
        """A fenced write, retried through outages; False from the queue means lease lost."""
        result = _retry(self.lease, self.ctx.stop, call)
        if result is False or result is None:
            self.lease.lost = True
            raise _GiveUp(f"lease of job {self.claim.job_id} taken over; write rejected")
        return result

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        f, job, token = self.ctx.factory, self.claim.job_id, self.claim.lease_token
        assert self.plan is not None
        ids = self.plan.preference_ids
        if kind == "start":
            resume = int(event["resume_epoch"])
            self.metrics_through = resume
            if event.get("keep_checkpoints") is not None:
                self.keep_checkpoints = max(int(event["keep_checkpoints"]), 1)
            stale = [row for epoch, (row, _) in self.plan.checkpoints.items() if epoch > resume]
            if stale:
                self._write(lambda: queue.drop_artifacts(f, job, token, stale))
                self.plan.checkpoints = {
                    e: v for e, v in self.plan.checkpoints.items() if e <= resume
                }
            if resume:
                log.info("job %s: resuming after epoch %d", job, resume)
        elif kind == "epoch":
            epoch = int(event["epoch"])
            points = [
                queue.MetricIn(
                    preference_id=ids[p["index"]],
                    epoch=epoch,
                    split=p["split"],
                    losses=p["losses"],
                    metrics=p.get("metrics") or {},
                    wall_time=float(event.get("wall_time", 0.0)),
                )
                for p in event["points"]
            ]
            self._write(lambda: queue.record_metrics(f, job, token, points))
            self.metrics_through = max(self.metrics_through, epoch)
            self._flush_pending()
        elif kind == "checkpoint":
            self.pending.append(event)
            self._flush_pending()
        elif kind == "divergence":
            pref = ids[int(event["index"])]
            epoch = int(event["epoch"])
            self._write(lambda: queue.record_divergence(f, job, token, pref, epoch))
        elif kind in ("finished", "stopped", "error"):
            self.outcome = event
        else:
            log.warning("job %s: unknown event %r", job, kind)

    def _flush_pending(self, *, final: bool = False) -> None:
        """Record checkpoints whose epoch's points are stored; at the end drop the rest."""
        assert self.plan is not None
        ready = [c for c in self.pending if int(c["epoch"]) <= self.metrics_through]
        self.pending = [] if final else [c for c in self.pending if c not in ready]
        for event in ready:
            self._record_checkpoint(event)

    def _record_checkpoint(self, event: dict[str, Any]) -> None:
        assert self.plan is not None
        f, job, token = self.ctx.factory, self.claim.job_id, self.claim.lease_token
        path, epoch = Path(event["path"]), int(event["epoch"])
        rel = self.ctx.store.relative(path)
        row = self._write(
            lambda: queue.record_artifact(
                f,
                job,
                token,
                kind="checkpoint",
                epoch=epoch,
                path=rel,
                sha256=event["sha256"],
                size=int(event["size"]),
            )
        )
        self.plan.checkpoints[epoch] = (row, path)
        self._prune_checkpoints()

    def _prune_checkpoints(self) -> None:
        """Delete checkpoints older than the newest ``keep_checkpoints`` recorded ones.

        The training process never deletes checkpoints: it runs ahead of this supervisor, so
        it could delete every file the database knows of. Here a file goes only once newer
        checkpoints are recorded, and only after its row was dropped by a fenced write: a
        supervisor that lost its lease deletes nothing (the directory may be another
        holder's by then). Rows whose file is gone anyway are dropped too.
        """
        assert self.plan is not None
        f, job, token = self.ctx.factory, self.claim.job_id, self.claim.lease_token
        recorded = self.plan.checkpoints
        missing = {e for e, (_, p) in recorded.items() if not p.exists()}
        present = sorted(e for e in recorded if e not in missing)
        old = set() if self.keep_checkpoints is None else set(present[: -self.keep_checkpoints])
        drop = sorted(missing | old)
        if not drop:
            return
        ids = [recorded[e][0] for e in drop]
        self._write(lambda: queue.drop_artifacts(f, job, token, ids))
        for e in drop:
            _, path = recorded.pop(e)
            if e in old:
                path.unlink(missing_ok=True)

    # .................................................................. outcome

    def _end(self, transition: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
        f, job, token = self.ctx.factory, self.claim.job_id, self.claim.lease_token
        try:
            result = _retry(
                self.lease, self.ctx.stop, lambda: transition(f, job, token, *args, **kwargs)
            )
        except _GiveUp as reason:
            log.warning("job %s: %s", job, reason)
            return "abandoned"
        if result is False or result is None:
            return "lost"
        return result if isinstance(result, str) else transition.__name__

    def _conclude(self, status: int) -> str:
        outcome = self.outcome or {}
        kind = outcome.get("type")
        if kind == "finished" and status == 0:
            return self._end(queue.finish)
        if self.stopping == "cancel" or (self.lease.cancel and kind != "error"):
            return self._end(queue.cancel_running)
        if self.stopping == "shutdown" and kind in ("stopped", None):
            return self._end(queue.release)
        if kind == "error":
            # The whole traceback is for the operator's log; the run's owner gets the error
            # itself (type and message; queue.fail strips paths and host names).
            log.warning(
                "job %s: training failed: %s\n%s",
                self.claim.job_id,
                outcome.get("message", "error"),
                outcome.get("traceback", ""),
            )
            return self._end(queue.fail, str(outcome.get("message") or "error"))
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        return self._end(queue.fail, f"the training process {how} without finishing")
