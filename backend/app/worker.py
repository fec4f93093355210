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
only once that time has certainly passed; when the database answers again the claim's attempt
is given back, since the training did not fail. The main thread reaps expired leases of all workers
periodically.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from backend.app import queue
from backend.app.db.session import (
    SchemaError,
    check_schema,
    create_db_engine,
    make_session_factory,
)
from backend.app.job_runner import DB_ERRORS, JobContext, JobRunner, backoff, child_environment
from backend.app.storage import ArtifactStore

__all__ = ["WorkerSettings", "child_environment", "parse_devices", "run_worker"]

log = logging.getLogger("backend.app.worker")  # also when run as __main__


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


# ---------------------------------------------------------------- slots and the supervisor


class _Slot(threading.Thread):
    """Claims and runs jobs on one device until stopped (or after one job with ``once``)."""

    def __init__(self, ctx: JobContext, device: str, name: str, once: bool) -> None:
        super().__init__(name=f"slot-{device}", daemon=True)
        self.ctx, self.device, self.worker_name, self.once = ctx, device, name, once
        self.processed = 0

    def run(self) -> None:
        delays = backoff()
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
            delays = backoff()
            if claim is None:
                if self.once:
                    return
                self.ctx.stop.wait(self.ctx.poll_seconds)
                continue
            log.info(
                "%s: claimed job %s (attempt %d)", self.worker_name, claim.job_id, claim.attempts
            )
            JobRunner(self.ctx, claim, self.device, granted_at).run()
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
    ctx = JobContext(
        factory=make_session_factory(engine),
        store=ArtifactStore(settings.artifact_root),
        lease_seconds=float(settings.lease_seconds),
        heartbeat_seconds=float(settings.heartbeat_seconds),
        poll_seconds=float(poll_interval or settings.worker_poll_seconds),
        stop=stop,
        download_data=bool(getattr(settings, "download_data", False)),
        allow_dotted_problems=bool(getattr(settings, "allow_dotted_problems", False)),
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
