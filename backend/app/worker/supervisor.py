"""The worker supervisor: slots that claim jobs and run them through an executor, leases kept alive.

``run_worker(settings, devices)`` runs on one host. With the local executor (the embedded
default) there is one slot per device; each slot claims a job from the queue
(:mod:`backend.app.queue`) and runs it in a child process that sees only its device
(:mod:`.executors.local`). With ``executor="ray"`` the process is a dispatcher for a Ray
cluster: it runs as many slots as the cluster has room for (its GPUs, or CPUs where it has
none, per job; re-read while it runs, so an autoscaled cluster gets more) and each job is a Ray
task (:mod:`.executors.ray`). Either way :class:`.runner.JobRunner` keeps the lease, writes the
training's events through fenced writes and ends the job.

Database outages do not stop the supervisor: every database call is retried with backoff
(connections are checked out with ``pool_pre_ping``). The training keeps going while the lease
is still valid by the local monotonic clock, and the job is given up only once that time has
certainly passed; when the database answers again the claim's attempt is given back. The main
thread reaps expired leases of all workers periodically.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from backend.app import queue
from backend.app.db.session import SchemaError, check_schema, create_db_engine, make_session_factory
from backend.app.storage import ArtifactStore
from backend.app.worker.devices import parse_devices
from backend.app.worker.executors import Training
from backend.app.worker.lease import DB_ERRORS, backoff
from backend.app.worker.runner import JobContext, JobRunner

__all__ = ["EXECUTORS", "WorkerSettings", "run_worker"]

log = logging.getLogger("backend.app.worker")

#: The executors ``pmtl worker --executor`` accepts.
EXECUTORS = ("local", "ray")
#: Seconds between two looks at a Ray cluster's size.
CAPACITY_EVERY = 10.0


class WorkerSettings(Protocol):
    """The settings a worker reads (``backend.app.core.config.Settings`` provides them)."""

    database_url: str
    lease_seconds: float
    heartbeat_seconds: float
    worker_poll_seconds: float
    download_data: bool
    allow_dotted_problems: bool

    @property
    def artifact_root(self) -> Path: ...


class _Slot(threading.Thread):
    """Claims and runs jobs until stopped (after one job with ``once``; while ``active()``)."""

    def __init__(
        self,
        ctx: JobContext,
        device: str,
        name: str,
        once: bool,
        training: Callable[[], Training],
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__(name=f"slot-{name}", daemon=True)
        self.ctx, self.device, self.worker_name, self.once = ctx, device, name, once
        self.training, self.active = training, active
        self.processed = 0

    def run(self) -> None:
        delays = backoff()
        while not self.ctx.stop.is_set() and self.active():
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
            delays = backoff()
            if claim is None:
                if self.once:
                    return
                self.ctx.stop.wait(self.ctx.poll_seconds)
                continue
            log.info(
                "%s: claimed job %s (attempt %d)", self.worker_name, claim.job_id, claim.attempts
            )
            JobRunner(self.ctx, claim, self.device, granted_at, self.training()).run()
            self.processed += 1
            if self.once:
                return


def _wait_for_database(ctx: JobContext, engine: Any) -> None:
    """Check the schema, waiting through outages; a wrong schema is an error at once."""
    delays = backoff(0.5)
    while not ctx.stop.is_set():
        try:
            check_schema(engine)
            return
        except SchemaError:
            raise
        except DB_ERRORS as error:
            log.warning("waiting for the database: %s", error)
            ctx.stop.wait(next(delays))


class _Pool:
    """The slots of one supervisor: fixed (local devices) or following a Ray cluster's size."""

    def __init__(self, ctx: JobContext, base: str, once: bool) -> None:
        self.ctx, self.base, self.once = ctx, base, once
        self.slots: list[_Slot] = []
        self.capacity: Callable[[], int] | None = None
        self.target = 0
        self.next_look = 0.0

    def local(self, devices: list[str]) -> None:
        """One slot per local device, each running its jobs in child processes."""
        from backend.app.worker.executors.local import LocalTraining

        for i, device in enumerate(devices):
            self._add(device, f"{self.base}/{device}#{i}", lambda d=device: LocalTraining(d))
        log.info("worker %s: %d slot(s) on %s", self.base, len(devices), ", ".join(devices))

    def ray(self, cluster: Any) -> None:
        """Slots that follow the Ray cluster's capacity, each running its jobs as Ray tasks."""
        self.capacity = cluster.capacity
        self.cluster = cluster
        self.grow()
        per = (
            f"{cluster.gpus_per_job:g} GPU"
            if cluster.gpus_per_job
            else f"{cluster.cpus_per_job:g} CPU"
        )
        log.info(
            "dispatcher %s: Ray cluster at %s, %s per job, room for %d job(s)",
            self.base,
            cluster.address,
            per,
            self.target,
        )

    def grow(self) -> None:
        """Ray: add slots up to the cluster's current capacity (slots past it retire)."""
        if self.capacity is None or time.monotonic() < self.next_look:
            return
        self.next_look = time.monotonic() + CAPACITY_EVERY
        try:
            self.target = max(self.capacity(), 0)
        except Exception as error:  # the cluster is unreachable for a moment
            log.warning("cannot read the Ray cluster's resources (%s)", error)
            return
        kind = "gpu" if self.cluster.gpus_per_job else "cpu"
        while sum(s.is_alive() for s in self.slots) < self.target and not self.ctx.stop.is_set():
            i = len(self.slots)
            self._add(
                f"ray:{kind}",
                f"{self.base}/ray#{i}",
                self.cluster.training,
                active=lambda i=i: self._room(i),
            )
            if self.once:
                break

    def _room(self, index: int) -> bool:
        alive = [s for s in self.slots if s.is_alive()]
        ordinal = next((k for k, s in enumerate(alive) if s.worker_name.endswith(f"#{index}")), 0)
        return ordinal < self.target

    def _add(self, device: str, name: str, training: Callable[[], Training], **kwargs: Any) -> None:
        slot = _Slot(self.ctx, device, name, self.once, training, **kwargs)
        self.slots.append(slot)
        slot.start()


def run_worker(
    settings: WorkerSettings,
    devices: Sequence[str] | str = "auto",
    *,
    once: bool = False,
    stop_event: threading.Event | None = None,
    poll_interval: float | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    gpus_per_job: float | None = None,
    cpus_per_job: float = 1.0,
) -> int:
    """Supervise slots until ``stop_event`` is set (SIGTERM/SIGINT set it too).

    ``executor="local"``: one slot per device of ``devices``. ``executor="ray"``: a dispatcher
    for the Ray cluster at ``ray_address`` (``HOST:PORT`` of its head), ``gpus_per_job``
    (default 1 on a cluster with GPUs, else 0) and, without GPUs, ``cpus_per_job`` per task.
    ``once``: every slot runs at most one job and the call returns when all slots are done (a
    slot whose first claim finds the queue empty returns at once; Ray: one slot). Returns the
    number of jobs run. Raises ``ValueError`` for bad devices or options and ``SchemaError``
    for an unmigrated database.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    if executor == "ray" and not ray_address:
        raise ValueError("the ray executor needs --ray-address HOST:PORT")
    slot_devices = parse_devices(devices) if executor == "local" else []
    stop = stop_event if stop_event is not None else threading.Event()
    engine = create_db_engine(settings.database_url)
    ctx = JobContext(
        factory=make_session_factory(engine),
        store=ArtifactStore(settings.artifact_root),
        lease_seconds=float(settings.lease_seconds),
        heartbeat_seconds=float(settings.heartbeat_seconds),
        poll_seconds=float(poll_interval or settings.worker_poll_seconds),
        stop=stop,
        download_data=bool(getattr(settings, "download_data", False)),
        allow_dotted_problems=bool(getattr(settings, "allow_dotted_problems", False)),
        wall_clock_limit=float(getattr(settings, "job_wall_clock_limit_s", 0.0) or 0.0),
        progress_seconds=float(getattr(settings, "progress_seconds", 2.0)),
    )
    restorers = [_install_signal_handlers(stop)]
    cluster = None
    try:
        _wait_for_database(ctx, engine)
        pool = _Pool(ctx, f"{socket.gethostname()}:{os.getpid()}", once)
        if executor == "ray":
            cluster = _connect_ray(str(ray_address), gpus_per_job, cpus_per_job)
            # Ray's core worker installs its own SIGTERM handler (dump and die): ours again.
            restorers.append(_install_signal_handlers(stop))
            pool.ray(cluster)
        else:
            pool.local(slot_devices)
        reap_every = max(ctx.lease_seconds / 2, ctx.poll_seconds)
        next_reap = 0.0
        while any(slot.is_alive() for slot in pool.slots) or (
            cluster is not None and not once and not stop.is_set()
        ):
            if time.monotonic() >= next_reap:
                try:
                    queue.reap_expired(ctx.factory)
                except DB_ERRORS as error:
                    log.warning("reaping failed (%s); will retry", error)
                next_reap = time.monotonic() + reap_every
            if not once:
                pool.grow()
            alive = [slot for slot in pool.slots if slot.is_alive()] or [None]
            for slot in alive:
                if slot is None:
                    stop.wait(min(ctx.poll_seconds, 0.5))
                else:
                    slot.join(timeout=min(ctx.poll_seconds, 0.5) / len(alive))
        return sum(slot.processed for slot in pool.slots)
    finally:
        for restore in reversed(restorers):
            restore()
        if cluster is not None:
            cluster.shutdown()
        engine.dispose()


def _connect_ray(address: str, gpus_per_job: float | None, cpus_per_job: float) -> Any:
    """Connect to the Ray cluster (``ray`` is an optional extra: a clear error without it)."""
    factory = logging.getLogRecordFactory()
    try:
        from backend.app.worker.executors.ray import RayCluster
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ValueError("the ray executor needs Ray: pip install 'pareto-mtl-lab[ray]'") from error
    finally:
        # Importing Ray adds a timestamp field to every log record; keep our records as they are.
        logging.setLogRecordFactory(factory)
    try:
        return RayCluster(address, gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job)
    except (ConnectionError, RuntimeError) as error:
        raise ValueError(f"cannot connect to the Ray cluster at {address}: {error}") from error


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
    """``python -m backend.app.worker [--devices cpu] [--once] [--executor ray …]`` (PMTL_*)."""
    import argparse

    from backend.app.core.config import Settings
    from backend.app.core.logging import configure_logging

    parser = argparse.ArgumentParser(description="Run a worker (supervisor or Ray dispatcher).")
    parser.add_argument("--devices", default="auto")
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--executor", choices=EXECUTORS, default="local")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--gpus-per-job", type=float, default=None)
    parser.add_argument("--cpus-per-job", type=float, default=1.0)
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    run_worker(
        settings,
        args.devices,
        once=args.once,
        executor=args.executor,
        ray_address=args.ray_address,
        gpus_per_job=args.gpus_per_job,
        cpus_per_job=args.cpus_per_job,
    )
    return 0
