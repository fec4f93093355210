"""The durable job queue on the service's own database: every job state transition lives here.

Modules: :mod:`.jobs` (API side: enqueue, cancel requests, run status), :mod:`.claims` (which
job goes next, and the :class:`Lease` handle a claim returns), :mod:`.leases` (renewal,
terminal transitions, reaping, outage refunds), :mod:`.writes` (fenced writes) and
:mod:`.transactions` (dialects, write and run locks). Everything is re-exported here.

States: ``queued → running → finished | failed | cancelled`` (``running → queued`` again on a
retry, a graceful release or an expired lease). A worker takes a job with :func:`claim`, which
increments ``attempts`` and ``lease_token`` and leases the job for ``lease_seconds``; it keeps
the lease with :func:`renew` and ends it with :func:`finish`, :func:`fail`, :func:`release` or
:func:`cancel_running`. Leases that are not renewed are swept back to the queue by
:func:`reap_expired` (or to ``failed`` after ``max_attempts`` claims).

Database outages: a supervisor cut off from the database cannot renew its lease, so the job
is reaped (or abandoned by the supervisor itself) although its training never failed. Once the
database answers again, that supervisor calls :func:`refund_attempt`: the claim's attempt is
given back (and a job failed by the reaper for it is queued again), so only failures of the
training itself use up ``max_attempts``. The reaper records the lease token it ended
(``jobs.reaped_token``), which makes the refund exact and idempotent.

Fencing: every worker write (:func:`record_metrics`, :func:`record_artifact`,
:func:`record_divergence` and the terminal transitions) checks, in the same transaction, that
the job is still ``running`` under the caller's ``lease_token``; a worker whose lease was
reaped or taken over therefore writes nothing. On PostgreSQL the check locks the job row
(``FOR SHARE``), so a takeover cannot commit between the check and the write.

Transactions and dialects (all differences are in :mod:`.transactions`):

- SQLite: every worker transaction starts with ``BEGIN IMMEDIATE``, so it holds the database's
  write lock from its first statement (readers continue under WAL; writers queue on
  ``busy_timeout``) and never fails half-way with ``SQLITE_BUSY_SNAPSHOT``. Times are the
  worker's clock, which is the database host's clock for a local file.
- PostgreSQL: times are the server's ``now()``, so leases do not depend on the worker hosts'
  clocks. Lock order is always *run row, then job rows*; only :func:`claim` and :func:`renew`
  lock a job row alone, and they never wait for a run row afterwards.
- ``metric_points.seq`` comes from a sequence, and two transactions may draw seqs in one order
  and commit in the other; a poller reading ``seq > after`` between the two commits would skip
  a row for good. :func:`record_metrics` therefore locks the run row (``FOR NO KEY UPDATE``)
  before inserting, so the metric inserts of one run are serialised and, per run, seq order is
  commit order. (SQLite has a single writer, so the property holds there by construction.)

Functions that take a ``session`` (:func:`enqueue`, :func:`request_cancel`,
:func:`refresh_run_status`) are called by the API inside its own session scope and only flush;
functions that take a ``session_factory`` run their own transaction and commit it. Worker-side
functions let database errors propagate as :class:`backend.app.db.session.DatabaseError`.
"""

from backend.app.queue.claims import Claim, Lease, claim, claim_order
from backend.app.queue.jobs import enqueue, refresh_run_status, request_cancel
from backend.app.queue.leases import (
    LeaseStatus,
    cancel_running,
    fail,
    finish,
    reap_expired,
    refund_attempt,
    release,
    renew,
    renew_status,
)
from backend.app.queue.transactions import (
    ACTIVE_STATES,
    LEASE_EXPIRED,
    OUTAGE_REFUNDED,
    TERMINAL_STATES,
    SessionFactory,
    lock_run,
    lock_user,
)
from backend.app.queue.writes import (
    MetricIn,
    drop_artifacts,
    record_artifact,
    record_divergence,
    record_metrics,
)

__all__ = [
    "ACTIVE_STATES",
    "LEASE_EXPIRED",
    "OUTAGE_REFUNDED",
    "TERMINAL_STATES",
    "Claim",
    "Lease",
    "LeaseStatus",
    "MetricIn",
    "SessionFactory",
    "cancel_running",
    "claim",
    "claim_order",
    "drop_artifacts",
    "enqueue",
    "fail",
    "finish",
    "lock_run",
    "lock_user",
    "reap_expired",
    "record_artifact",
    "record_divergence",
    "record_metrics",
    "refresh_run_status",
    "refund_attempt",
    "release",
    "renew",
    "renew_status",
    "request_cancel",
]
