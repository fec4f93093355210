"""Fair claims: the next job goes to the user whose last claimed job is oldest (never served
first), ties by job age; on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import pytest

from backend.app import queue
from backend.app.db.models import Preference, Run, User
from backend.app.db.session import session_scope
from tests.backend._queue_helpers import DIALECTS, clear, database, session_factory


@pytest.fixture(scope="module", params=DIALECTS)
def db_url(request, tmp_path_factory):
    with database(request.param, tmp_path_factory.mktemp("fairness")) as url:
        yield url


@pytest.fixture
def factory(db_url):
    with session_factory(db_url) as made:
        clear(made)
        yield made


def _user(factory, name: str) -> int:
    with session_scope(factory) as session:
        user = User(name=name)
        session.add(user)
        session.flush()
        return user.id


def _run(factory, owner_id: int, jobs: int) -> list[int]:
    """A run of ``owner_id`` with ``jobs`` queued one-preference jobs; their ids, in order."""
    with session_scope(factory) as session:
        run = Run(
            owner_id=owner_id,
            name="fair",
            problem="concave",
            method="pareto_mtl",
            n_tasks=2,
            task_names=["f1", "f2"],
        )
        session.add(run)
        session.flush()
        ids = []
        for k in range(jobs):
            pref = Preference(run=run, index=k, vector=[1.0 - k / 10, k / 10 + 0.05])
            session.add(pref)
            ids.append(queue.enqueue(session, run=run, preferences=[pref], epochs=1).id)
        return ids


def _claim_all(factory, n: int) -> list[int]:
    order = []
    for _ in range(n):
        lease = queue.claim(factory, worker="w", device="cpu", lease_seconds=60)
        assert lease is not None
        order.append(lease.job_id)
    return order


def test_users_take_turns_in_order_of_their_last_claim(factory):
    alice, bob = _user(factory, "alice"), _user(factory, "bob")
    a = _run(factory, alice, 3)  # alice queues a big run first ...
    b = _run(factory, bob, 2)  # ... bob's jobs are younger but bob was never served
    # Both never served: the older job (alice's) wins the tie; then bob, who was never
    # served; then whoever was served longest ago.
    assert _claim_all(factory, 5) == [a[0], b[0], a[1], b[1], a[2]]
    assert queue.claim(factory, worker="w", device="cpu", lease_seconds=60) is None


def test_a_newcomer_goes_before_users_already_served(factory):
    alice, carol = _user(factory, "alice"), _user(factory, "carol")
    a = _run(factory, alice, 4)
    assert _claim_all(factory, 2) == a[:2]
    c = _run(factory, carol, 1)  # carol arrives while alice still has queued jobs
    assert _claim_all(factory, 3) == [c[0], a[2], a[3]]


def test_one_user_alone_is_served_oldest_job_first(factory):
    dave = _user(factory, "dave")
    first, second = _run(factory, dave, 2), _run(factory, dave, 2)
    assert _claim_all(factory, 4) == first + second
