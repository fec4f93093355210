"""Queue positions: the order in which the queued jobs would be claimed, as of now.

:func:`backend.app.queue.claims.claim_order` decides one claim at a time (the user whose last
claim is oldest goes first, a user never served before that; ties and jobs of one user by
age). A claim makes its user the most recently served, so the order over several claims
interleaves users. :func:`claim_sequence` replays that rule over every queued job, assuming
no new submissions and no other changes, so position 1 is the next claim, position 2 the one
after it, and so on. Tests check it against :func:`backend.app.queue.claim` itself.
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.app.db.models import Job, Run

__all__ = ["claim_sequence"]


def _moment(value: Any) -> datetime | None:
    """A timezone-aware datetime from what the aggregate returns (SQLite may give text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def claim_sequence(session: Session) -> list[int]:
    """Ids of the claimable queued jobs in the order workers would claim them (first: next).

    Jobs of runs with a cancel request are left out, as :func:`backend.app.queue.claim` skips
    them. Two queries: the queued jobs with their owners, and each owner's latest claim.
    """
    queued = session.execute(
        select(Job.id, Run.owner_id)
        .join(Run, Run.id == Job.run_id)
        .where(Job.state == "queued", Run.cancel_requested.is_(False))
        .order_by(Job.id)
    ).all()
    if not queued:
        return []
    by_owner: dict[int, deque[int]] = defaultdict(deque)
    for job_id, owner_id in queued:
        by_owner[owner_id].append(job_id)
    latest = session.execute(
        select(Run.owner_id, func.max(Job.started_at))
        .join(Job, Job.run_id == Run.id)
        .where(Run.owner_id.in_(list(by_owner)))
        .group_by(Run.owner_id)
    ).all()
    last = {owner: _moment(at) for owner, at in latest}
    # Heap keys: never served (0) before served at a real time (1), before served by one of
    # the replayed claims (2, in claim order); ties by the head job's id, as claim_order.
    heap: list[tuple[tuple[int, Any], int, int]] = []
    for owner, jobs in by_owner.items():
        at = last.get(owner)
        key: tuple[int, Any] = (0, 0) if at is None else (1, at)
        heap.append((key, jobs[0], owner))
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        _, job_id, owner = heapq.heappop(heap)
        order.append(job_id)
        jobs = by_owner[owner]
        jobs.popleft()
        if jobs:
            heapq.heappush(heap, ((2, len(order)), jobs[0], owner))
    return order
