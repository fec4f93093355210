"""Executors: where a claimed job's training runs. ``local`` (a child process per job) or ``ray``.

Both hand the supervisor a :class:`Training` handle speaking the typed job protocol
(:mod:`backend.app.worker.protocol`): a spec in, events out, a lifeline renewed with the lease,
a graceful stop and a kill. :class:`backend.app.worker.runner.JobRunner` does the rest (the
lease, the fenced writes, the outcome) the same way for both.
"""

from __future__ import annotations

import queue as stdlib_queue
from typing import Protocol

from backend.app.worker.protocol import Event, JobSpec

__all__ = ["EventQueue", "Training"]

#: Events of one training, then ``None`` once its stream ended.
EventQueue = stdlib_queue.Queue[Event | None]


class Training(Protocol):
    """One job's training, wherever it runs."""

    #: the device the training side trains on, written into the spec (``cpu``, ``cuda:0``)
    device: str

    def start(self, spec: JobSpec, events: EventQueue) -> None:
        """Start training ``spec``; put its events on ``events``, then None at the end."""

    def renewed(self) -> None:
        """The lease was renewed (the training side exits after a lease without news)."""

    def terminate(self) -> None:
        """Ask the training to stop between two batches, keeping its last checkpoint."""

    def kill(self) -> None:
        """Stop the training at once and wait until it is gone."""

    def poll(self) -> int | None:
        """None while it runs; then 0 for a clean end, anything else for a failure."""

    def describe(self, status: int) -> str:
        """How a training that ended without an outcome event ended (for the job's error)."""

    def close(self) -> None:
        """Release the handle's resources (pipes, references) once it ended."""
