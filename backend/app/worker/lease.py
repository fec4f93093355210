"""The lease of one claimed job as its supervisor keeps it: a heartbeat thread and outage rules.

The heartbeat renews every min(``heartbeat_seconds``, lease/3) through the claim's
:class:`backend.app.queue.Lease` handle and learns whether the run was cancelled or the lease
lost. Through a database outage the lease stays valid by the local monotonic clock until
``lease_seconds`` after the last successful renewal returned; :func:`retry` retries database
calls until then and :class:`GiveUp` abandons the job afterwards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from backend.app import queue
from backend.app.db.session import DatabaseError

__all__ = ["DB_ERRORS", "GiveUp", "HeartbeatLease", "backoff", "retry"]

log = logging.getLogger("backend.app.worker")
T = TypeVar("T")

#: Errors that mean "the database is unavailable right now": retried, never fatal.
DB_ERRORS = (DatabaseError, SQLAlchemyError)
#: Largest pause between two attempts of a failing database call.
MAX_BACKOFF = 5.0


class GiveUp(Exception):
    """The lease is lost or certainly expired: abandon the job without writing anything."""


def backoff(first: float = 0.2) -> Iterator[float]:
    """Pauses between attempts: ``first``, doubling, at most :data:`MAX_BACKOFF`."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, MAX_BACKOFF)


class HeartbeatLease:
    """The lease of one claimed job, renewed by a heartbeat thread."""

    def __init__(
        self,
        claim: queue.Lease,
        granted_at: float,
        *,
        lease_seconds: float,
        heartbeat_seconds: float,
    ) -> None:
        self.claim = claim
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.valid_until = granted_at + lease_seconds
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
        """Start renewing."""
        self._thread.start()

    def close(self) -> None:
        """Stop renewing (the lease itself is ended by a transition, or expires)."""
        self._done.set()
        self._thread.join(timeout=self.lease_seconds + 5)

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
        """Raise :class:`GiveUp` once the lease is lost or expired."""
        if self.lost:
            raise GiveUp(f"lost the lease of job {self.claim.job_id}")
        if self.expired():
            self.given_up = True
            raise GiveUp(f"the lease of job {self.claim.job_id} expired during an outage")

    def _beat(self) -> None:
        interval = min(self.heartbeat_seconds, self.lease_seconds / 3)
        delays = backoff()
        wait = interval
        while not self._done.wait(wait) and not self.lost:
            if self.given_up or self.expired():
                self.given_up = True
                return
            try:
                status = self.claim.renew(self.lease_seconds)
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
            self.valid_until = received + self.lease_seconds
            self.on_renewed()
            if status is queue.LeaseStatus.CANCEL and not self.cancel:
                log.info("job %s: run %s was cancelled", self.claim.job_id, self.claim.run_id)
                self.cancel = True


def retry(lease: HeartbeatLease | None, stop: threading.Event, call: Callable[[], T]) -> T:
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
