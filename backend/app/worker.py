"""The worker supervisor: one slot per device, one training process per slot, leases kept alive.

``run_worker(settings, devices)`` runs on one host. Each slot claims a job from the queue
(:mod:`backend.app.queue`), starts ``python -m backend.app.worker_child`` with the device made
visible to it alone (``CUDA_VISIBLE_DEVICES``; the child then trains on ``cuda:0``, or on the
CPU), and while the child trains:

- a heartbeat thread renews the lease every ``lease/3`` seconds (or ``heartbeat_seconds`` if
  shorter) and learns from the renewal whether the run was cancelled or the lease lost;
- the slot writes the child's events (metric points, checkpoints with their SHA-256 and size,
  diverged preferences) through the queue's fenced writes, so nothing is written once the lease
  is gone. A checkpoint row is recorded only after the metric points of its epoch, so resuming
  from any recorded checkpoint never skips an epoch whose points are missing;
- on cancel (and on shutdown) the child gets SIGTERM, stops between two batches with its last
  checkpoint on disk, and is killed after a grace period if it does not; on a lost lease it is
  killed at once (SIGKILL), because a process that no longer holds the job must not write into
  the job's checkpoint directory any more. Every renewal is also passed on to the child, which
  exits by itself after a lease without one: a frozen or partitioned supervisor cannot leave a
  training process running under a lease that may already be someone else's.

Database outages do not stop the supervisor: every database call is retried with backoff
(connections are checked out with ``pool_pre_ping``). The child keeps training while the lease
is still valid by the local monotonic clock — the lease cannot outlive ``lease_seconds`` after
the last successful renewal returned — and the job is given up (child killed, nothing written)
only once that time has certainly passed. The main thread reaps expired leases of all workers
periodically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue as stdlib_queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from backend.app import queue
from backend.app.db.models import Artifact, Job, Preference, Run
from backend.app.db.session import (
    DatabaseError,
    SchemaError,
    check_schema,
    create_db_engine,
    make_session_factory,
    session_scope,
)
from backend.app.storage import ArtifactStore

__all__ = ["WorkerSettings", "child_environment", "parse_devices", "run_worker"]

log = logging.getLogger("backend.app.worker")  # also when run as __main__
T = TypeVar("T")

#: Errors that mean "the database is unavailable right now": retried, never fatal.
DB_ERRORS = (DatabaseError, SQLAlchemyError)
#: Seconds between SIGTERM and SIGKILL when a child is asked to stop.
KILL_GRACE = 5.0
#: Largest pause between two attempts of a failing database call.
MAX_BACKOFF = 5.0


class WorkerSettings(Protocol):
    """The settings a worker reads (``backend.app.core.config.Settings`` provides them)."""

    database_url: str
    lease_seconds: float
    heartbeat_seconds: float
    worker_poll_seconds: float
    download_data: bool

    @property
    def artifact_root(self) -> Path: ...


# ---------------------------------------------------------------- devices


def parse_devices(devices: Sequence[str] | str = "auto") -> list[str]:
    """Slots to run: ``auto`` (every visible GPU, else the CPU), ``cpu``, ``cuda:0,cuda:1``."""
    items = devices.split(",") if isinstance(devices, str) else list(devices)
    names = [d.strip().lower() for d in items if d.strip()]
    if not names:
        raise ValueError("no device given; use cpu, auto or cuda:N[,cuda:M…]")
    if names == ["auto"]:
        count = _gpu_count()
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
    out = []
    for name in names:
        if name == "cpu":
            out.append("cpu")
            continue
        index = name.removeprefix("cuda").removeprefix(":") or "0"
        if not name.startswith("cuda") or not index.isdigit():
            raise ValueError(f"unknown device {name!r}; use cpu, auto or cuda:N")
        count = _gpu_count()
        if int(index) >= count:
            raise ValueError(f"device {name!r} requested but {count} GPU(s) are visible")
        out.append(f"cuda:{int(index)}")
    duplicates = sorted({d for d in out if d != "cpu" and out.count(d) > 1})
    if duplicates:
        raise ValueError(f"each GPU takes one slot; {duplicates} given more than once")
    return out


def _gpu_count() -> int:
    import torch  # only when GPUs are asked about: the supervisor itself never trains

    return torch.cuda.device_count()


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
class _Context:
    factory: sessionmaker[Session]
    store: ArtifactStore
    lease_seconds: float
    heartbeat_seconds: float
    poll_seconds: float
    stop: threading.Event
    grace: float = KILL_GRACE
    download_data: bool = False


class _GiveUp(Exception):
    """The lease is lost or certainly expired: abandon the job without writing anything."""


def _backoff(first: float = 0.2) -> Iterator[float]:
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, MAX_BACKOFF)


# ---------------------------------------------------------------- the lease


class _Lease:
    """The lease of one claimed job, renewed by a heartbeat thread."""

    def __init__(self, ctx: _Context, claim: queue.Claim, granted_at: float) -> None:
        self.ctx = ctx
        self.claim = claim
        self.valid_until = granted_at + ctx.lease_seconds
        self.lost = False
        self.cancel = False
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

    def check(self) -> None:
        """Raise :class:`_GiveUp` once the lease is lost or expired."""
        if self.lost:
            raise _GiveUp(f"lost the lease of job {self.claim.job_id}")
        if self.expired():
            raise _GiveUp(f"the lease of job {self.claim.job_id} expired during an outage")

    def _beat(self) -> None:
        interval = min(self.ctx.heartbeat_seconds, self.ctx.lease_seconds / 3)
        delays = _backoff()
        wait = interval
        while not self._done.wait(wait) and not self.lost:
            try:
                status = queue.renew_status(
                    self.ctx.factory,
                    self.claim.job_id,
                    self.claim.lease_token,
                    lease_seconds=self.ctx.lease_seconds,
                )
            except DB_ERRORS as error:
                wait = min(next(delays), interval)
                log.warning("heartbeat of job %s failed (%s); retrying", self.claim.job_id, error)
                continue
            received = time.monotonic()
            delays, wait = _backoff(), interval
            if status is queue.LeaseStatus.LOST:
                log.warning("job %s: lease lost (reaped or taken over)", self.claim.job_id)
                self.lost = True
                return
            self.valid_until = received + self.ctx.lease_seconds
            self.on_renewed()
            if status is queue.LeaseStatus.CANCEL and not self.cancel:
                log.info("job %s: run %s was cancelled", self.claim.job_id, self.claim.run_id)
                self.cancel = True


def _retry(lease: _Lease | None, stop: threading.Event, call: Callable[[], T]) -> T:
    """``call()`` until the database answers; with a lease, give up once it is gone."""
    delays = _backoff()
    while True:
        if lease is not None:
            lease.check()
        try:
            return call()
        except DB_ERRORS as error:
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


def _load_plan(ctx: _Context, claim: queue.Claim, device: str) -> _Plan:
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


class _JobRunner:
    """Runs one claimed job to an outcome: finished, failed (retry), cancelled, released, lost."""

    def __init__(self, ctx: _Context, claim: queue.Claim, device: str, granted_at: float) -> None:
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
        if self.proc is not None:
            log.info(
                "job %s: training process %d exited with status %s",
                job,
                self.proc.pid,
                self.proc.returncode,
            )
        log.info("job %s (attempt %d): %s", job, self.claim.attempts, result)
        return result

    def _run(self) -> str:
        ctx, claim = self.ctx, self.claim
        env, child_device = child_environment(self.device)
        self.plan = _retry(self.lease, ctx.stop, lambda: _load_plan(ctx, claim, child_device))
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
        pruned = [e for e, (_, p) in self.plan.checkpoints.items() if not p.exists()]
        if pruned:
            ids = [self.plan.checkpoints[e][0] for e in pruned]
            self._write(lambda: queue.drop_artifacts(f, job, token, ids))
            for e in pruned:
                del self.plan.checkpoints[e]

    # .................................................................. outcome

    def _end(self, transition: Callable[..., Any], *args: Any) -> str:
        f, job, token = self.ctx.factory, self.claim.job_id, self.claim.lease_token
        try:
            result = _retry(self.lease, self.ctx.stop, lambda: transition(f, job, token, *args))
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
            text = f"{outcome.get('message', 'error')}\n{outcome.get('traceback', '')}".strip()
            return self._end(queue.fail, text)
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        return self._end(queue.fail, f"the training process {how} without finishing")


# ---------------------------------------------------------------- slots and the supervisor


class _Slot(threading.Thread):
    """Claims and runs jobs on one device until stopped (or after one job with ``once``)."""

    def __init__(self, ctx: _Context, device: str, name: str, once: bool) -> None:
        super().__init__(name=f"slot-{device}", daemon=True)
        self.ctx, self.device, self.worker_name, self.once = ctx, device, name, once
        self.processed = 0

    def run(self) -> None:
        delays = _backoff()
        while not self.ctx.stop.is_set():
            try:
                claim = queue.claim(
                    self.ctx.factory,
                    worker=self.worker_name,
                    device=self.device,
                    lease_seconds=self.ctx.lease_seconds,
                )
            except DB_ERRORS as error:
                log.warning("%s: cannot claim (%s)", self.worker_name, error)
                self.ctx.stop.wait(next(delays))
                continue
            granted_at = time.monotonic()
            delays = _backoff()
            if claim is None:
                if self.once:
                    return
                self.ctx.stop.wait(self.ctx.poll_seconds)
                continue
            log.info(
                "%s: claimed job %s (attempt %d)", self.worker_name, claim.job_id, claim.attempts
            )
            _JobRunner(self.ctx, claim, self.device, granted_at).run()
            self.processed += 1
            if self.once:
                return


def _wait_for_database(ctx: _Context, engine: Any) -> None:
    """Check the schema, waiting through outages; a wrong schema is an error at once."""
    delays = _backoff(0.5)
    while not ctx.stop.is_set():
        try:
            check_schema(engine)
            return
        except SchemaError:
            raise
        except DB_ERRORS as error:
            log.warning("waiting for the database: %s", error)
            ctx.stop.wait(next(delays))


def run_worker(
    settings: WorkerSettings,
    devices: Sequence[str] | str = "auto",
    *,
    once: bool = False,
    stop_event: threading.Event | None = None,
    poll_interval: float | None = None,
) -> int:
    """Supervise one slot per device until ``stop_event`` is set (SIGTERM/SIGINT set it too).

    ``once``: every slot runs at most one job and the call returns when all slots are done (a
    slot whose first claim finds the queue empty returns at once). Returns the number of jobs
    run. Raises ``ValueError`` for bad devices and ``SchemaError`` for an unmigrated database.
    """
    slots_devices = parse_devices(devices)
    stop = stop_event if stop_event is not None else threading.Event()
    engine = create_db_engine(settings.database_url)
    ctx = _Context(
        factory=make_session_factory(engine),
        store=ArtifactStore(settings.artifact_root),
        lease_seconds=float(settings.lease_seconds),
        heartbeat_seconds=float(settings.heartbeat_seconds),
        poll_seconds=float(poll_interval or settings.worker_poll_seconds),
        stop=stop,
        download_data=bool(getattr(settings, "download_data", False)),
    )
    restore = _install_signal_handlers(stop)
    try:
        _wait_for_database(ctx, engine)
        base = f"{socket.gethostname()}:{os.getpid()}"
        slots = [
            _Slot(ctx, device, f"{base}/{device}#{i}", once)
            for i, device in enumerate(slots_devices)
        ]
        log.info("worker %s: %d slot(s) on %s", base, len(slots), ", ".join(slots_devices))
        for slot in slots:
            slot.start()
        reap_every = max(ctx.lease_seconds / 2, ctx.poll_seconds)
        next_reap = 0.0
        while any(slot.is_alive() for slot in slots):
            if time.monotonic() >= next_reap:
                try:
                    queue.reap_expired(ctx.factory)
                except DB_ERRORS as error:
                    log.warning("reaping failed (%s); will retry", error)
                next_reap = time.monotonic() + reap_every
            for slot in slots:
                slot.join(timeout=min(ctx.poll_seconds, 0.5) / len(slots))
        return sum(slot.processed for slot in slots)
    finally:
        restore()
        engine.dispose()


def _install_signal_handlers(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT set ``stop`` (graceful: children checkpoint, jobs go back to the queue);
    a second signal interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        if stop.is_set():  # asked twice: stop now (the children exit with their lifeline)
            raise KeyboardInterrupt
        log.info("signal %d: stopping after the current jobs are handed back", signum)
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m backend.app.worker [--devices cpu] [--once]`` with settings from PMTL_*."""
    import argparse

    from backend.app.core.config import Settings
    from backend.app.core.logging import configure_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="auto")
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    run_worker(settings, args.devices, once=args.once)
    return 0


if __name__ == "__main__":
    sys.exit(main())
