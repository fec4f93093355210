"""The Ray executor: each claimed job runs as a Ray task named ``pmtl-job-<id>`` on a Ray cluster.

The dispatcher (``pmtl worker --executor ray``) is a Ray driver. The queue stays the source of
truth: the dispatcher claims jobs, keeps their leases and performs every database write itself,
exactly as a local supervisor does, from the typed events that the task streams back (a Ray
streaming generator yielding protocol lines). The task therefore needs no database access and
gets no credentials; it needs the shared artifact directory at the same path as the
dispatcher (checkpoints) and the data sets.

Control goes the other way through one small actor per dispatcher (:class:`JobControl`, no
CPU): lease renewals and stop requests per job. A task stops between two batches when asked
(cancel, shutdown) and exits when no renewal arrived for a whole lease or the actor is gone
(the dispatcher died: Ray also kills a driver's tasks when the driver exits). A task is never
retried by Ray (``max_retries=0``): a lost worker or node fails the task, the dispatcher fails
the job's attempt through the queue and the job is claimed again, resuming from its last
recorded checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue as stdlib_queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import ray

from backend.app.worker.executors import EventQueue
from backend.app.worker.protocol import JobSpec, decode_event, decode_spec, encode

__all__ = ["ORPHANED", "JobControl", "RayCluster", "RayTraining", "task_name"]

log = logging.getLogger("backend.app.worker")

#: Exit status of a task whose dispatcher went away or stopped renewing.
ORPHANED = 70
#: Seconds between two polls of the control actor by a task.
POLL_SECONDS = 0.5


def task_name(job_id: int) -> str:
    """The Ray task name of a job: ``pmtl-job-<id>``."""
    return f"pmtl-job-{job_id}"


@ray.remote(num_cpus=0)
class JobControl:
    """Per dispatcher: when each job's lease was last renewed, and which jobs must stop."""

    def __init__(self) -> None:
        self.renewed_at: dict[int, float] = {}
        self.stops: set[int] = set()

    def renewed(self, job_id: int) -> None:
        """The dispatcher renewed the lease of ``job_id`` (also registers the job)."""
        self.renewed_at[job_id] = time.monotonic()

    def stop(self, job_id: int) -> None:
        """Ask the task of ``job_id`` to stop between two batches."""
        self.stops.add(job_id)

    def poll(self, job_id: int) -> tuple[bool, float]:
        """Whether the job must stop, and seconds since its last renewal."""
        now = time.monotonic()
        return job_id in self.stops, now - self.renewed_at.get(job_id, now)

    def forget(self, job_id: int) -> None:
        """The job's task ended."""
        self.renewed_at.pop(job_id, None)
        self.stops.discard(job_id)


def _watch(
    control: Any, job_id: int, lease_seconds: float, stop: threading.Event, done: threading.Event
) -> None:
    """In the task: set ``stop`` when asked; exit the worker when orphaned (no renewal).

    Ends with the task (``done``): Ray reuses worker processes for later tasks, which a
    leftover watcher must not stop or kill.
    """
    while not done.wait(POLL_SECONDS):
        try:
            stopped, age = ray.get(control.poll.remote(job_id), timeout=lease_seconds)
        except Exception:  # the actor (and so the dispatcher) is gone, or unreachable
            if done.is_set():  # the task is over: this process may be running another one
                return
            log.error("job %s: the dispatcher went away; exiting", job_id)
            os._exit(ORPHANED)
        if done.is_set():
            return
        if stopped:
            stop.set()
        if age > lease_seconds:
            log.error("job %s: no lease renewal for %.1f s; exiting", job_id, lease_seconds)
            os._exit(ORPHANED)


@ray.remote(max_retries=0, num_returns="streaming")
def _train_task(spec_line: str, control: Any) -> Iterator[str]:
    """The Ray task of one job: train it, yielding one protocol event line at a time."""
    from backend.app.worker.training import train_job

    spec = decode_spec(spec_line)
    spec = spec.model_copy(update={"device": "cuda:0" if ray.get_gpu_ids() else "cpu"})
    events: stdlib_queue.Queue[str | None] = stdlib_queue.Queue()
    stop, done = threading.Event(), threading.Event()
    threading.Thread(
        target=_watch,
        args=(control, spec.job_id, spec.lease_seconds, stop, done),
        name=f"lifeline-job-{spec.job_id}",
        daemon=True,
    ).start()

    def body() -> None:
        try:
            train_job(spec, lambda event: events.put(encode(event)), stop.is_set)
        finally:
            events.put(None)

    training = threading.Thread(target=body, name=f"training-job-{spec.job_id}", daemon=True)
    training.start()
    try:
        while (line := events.get()) is not None:
            yield line
        training.join()
    finally:
        done.set()


class RayCluster:
    """The dispatcher's connection to a Ray cluster: resources per job and the control actor."""

    def __init__(
        self, address: str, *, gpus_per_job: float | None = None, cpus_per_job: float = 1.0
    ) -> None:
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        self.address = address
        gpus = float(ray.cluster_resources().get("GPU", 0))
        self.gpus_per_job = float(gpus_per_job if gpus_per_job is not None else (1 if gpus else 0))
        if self.gpus_per_job < 0 or cpus_per_job < 0:
            raise ValueError("--gpus-per-job and --cpus-per-job cannot be negative")
        if self.gpus_per_job == 0 and cpus_per_job == 0:
            raise ValueError("a job needs a GPU or a CPU; both per-job amounts are 0")
        self.cpus_per_job = float(cpus_per_job) if not self.gpus_per_job else 0.0
        self.control = JobControl.remote()

    @property
    def device(self) -> str:
        """The device a task trains on (and the job's ``device`` column: ``ray:gpu|cpu``)."""
        return "cuda:0" if self.gpus_per_job else "cpu"

    def capacity(self) -> int:
        """How many jobs the cluster has room for at once (its total GPUs or CPUs, per job)."""
        resources = ray.cluster_resources()
        if self.gpus_per_job:
            return int(float(resources.get("GPU", 0)) // self.gpus_per_job)
        return int(float(resources.get("CPU", 0)) // self.cpus_per_job)

    def training(self) -> RayTraining:
        """A handle for the next job's task."""
        return RayTraining(self)

    def shutdown(self) -> None:
        """Disconnect from the cluster (the driver's tasks and actor end with it)."""
        with contextlib.suppress(Exception):
            ray.kill(self.control)
        ray.shutdown()


class RayTraining:
    """One job's Ray task, seen from the dispatcher."""

    def __init__(self, cluster: RayCluster) -> None:
        self.cluster = cluster
        self.device = cluster.device
        self.job_id: int | None = None
        self.generator: Any = None
        self.reader: threading.Thread | None = None
        self.status: int | None = None
        self.error = ""

    def start(self, spec: JobSpec, events: EventQueue) -> None:
        """Submit the task and stream its events onto ``events`` from a reader thread."""
        self.job_id = spec.job_id
        control = self.cluster.control
        ray.get(control.renewed.remote(spec.job_id))  # registered before the task polls
        self.generator = _train_task.options(
            name=task_name(spec.job_id),
            num_gpus=self.cluster.gpus_per_job,
            num_cpus=self.cluster.cpus_per_job,
        ).remote(encode(spec), control)
        log.info("job %s: Ray task %s submitted", spec.job_id, task_name(spec.job_id))
        self.reader = threading.Thread(target=self._read, args=(events,), daemon=True)
        self.reader.start()

    def _read(self, events: EventQueue) -> None:
        status = 0
        try:
            for ref in self.generator:
                line = ray.get(ref)
                try:
                    events.put(decode_event(line))
                except ValueError:
                    log.warning("job %s: unreadable event %r", self.job_id, str(line)[:200])
        except Exception as error:  # the task failed: worker or node lost, cancelled, ...
            status = 1
            self.error = (
                f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            )
            log.warning("job %s: Ray task ended with %s", self.job_id, error)
        finally:
            self.status = status
            events.put(None)

    def renewed(self) -> None:
        """Pass a lease renewal on to the task (fire and forget)."""
        if self.job_id is not None:
            self.cluster.control.renewed.remote(self.job_id)

    def terminate(self) -> None:
        """Ask the task to stop between two batches."""
        if self.job_id is not None:
            self.cluster.control.stop.remote(self.job_id)

    def kill(self) -> None:
        """Cancel the task by force (its worker process is killed) and wait until it ended."""
        if self.generator is None or self.status is not None:
            return
        with contextlib.suppress(Exception):
            ray.cancel(self.generator, force=True)
        if self.reader is not None:
            self.reader.join(timeout=30)

    def poll(self) -> int | None:
        """None while the task's stream runs; 0 once it ended cleanly, 1 if the task failed."""
        return self.status

    def describe(self, status: int) -> str:
        """How the task ended without an outcome event."""
        name = task_name(self.job_id or 0)
        return f"the Ray task {name} failed ({self.error})" if status else f"the Ray task {name}"

    def close(self) -> None:
        """Wait for the reader and forget the job in the control actor."""
        if self.reader is not None:
            self.reader.join(timeout=5)
        if self.job_id is not None:
            with contextlib.suppress(Exception):
                self.cluster.control.forget.remote(self.job_id)
