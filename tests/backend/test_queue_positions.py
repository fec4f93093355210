"""Queue positions replay the fair claim rule: the predicted order is the order in which
:func:`backend.app.queue.claim` then hands the jobs out (two and three users, after earlier
claims, with a cancelled run); the API reports a queued run's place and what runs; on SQLite
and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from backend.app import queue
from backend.app.db.models import Run
from backend.app.db.session import session_scope
from backend.app.queue.positions import claim_sequence
from tests.backend._api import Api
from tests.backend._queue_helpers import DIALECTS, clear, database, session_factory
from tests.backend.test_fairness import _claim_all, _run, _user


@pytest.fixture(scope="module", params=DIALECTS)
def queue_url(request, tmp_path_factory):
    with database(request.param, tmp_path_factory.mktemp("positions")) as url:
        yield url


@pytest.fixture
def factory(queue_url):
    with session_factory(queue_url) as made:
        clear(made)
        yield made


def _predicted(factory) -> list[int]:
    with session_scope(factory) as session:
        return claim_sequence(session)


def _claims_follow_the_prediction(factory) -> list[int]:
    predicted = _predicted(factory)
    assert _claim_all(factory, len(predicted)) == predicted
    assert queue.claim(factory, worker="w", device="cpu", lease_seconds=60) is None
    return predicted


def test_an_empty_queue_has_no_positions(factory):
    assert _predicted(factory) == []


def test_two_users_never_served_take_turns(factory):
    alice, bob = _user(factory, "alice"), _user(factory, "bob")
    a = _run(factory, alice, 3)
    b = _run(factory, bob, 2)
    assert _claims_follow_the_prediction(factory) == [a[0], b[0], a[1], b[1], a[2]]


def test_after_earlier_claims_the_least_recently_served_user_goes_first(factory):
    alice, bob, carol = (_user(factory, n) for n in ("alice", "bob", "carol"))
    a = _run(factory, alice, 3)
    b = _run(factory, bob, 3)
    assert _claim_all(factory, 3) == [a[0], b[0], a[1]]  # alice was served last
    c = _run(factory, carol, 2)  # a newcomer, never served
    assert _claims_follow_the_prediction(factory) == [c[0], b[1], a[2], c[1], b[2]]


def test_jobs_of_a_run_being_cancelled_have_no_place(factory):
    alice, bob = _user(factory, "alice"), _user(factory, "bob")
    a = _run(factory, alice, 2)
    b = _run(factory, bob, 2)
    with session_scope(factory) as session:
        session.execute(
            update(Run)
            .where(Run.owner_id == alice)
            .values(cancel_requested=True)
            .execution_options(synchronize_session=False)
        )
    assert set(_predicted(factory)).isdisjoint(a)
    assert _claims_follow_the_prediction(factory) == b


def test_the_api_tells_a_queued_run_its_place_and_what_runs(api: Api):
    first = api.create_run(user="alice")
    second = api.create_run(user="bob")
    third = api.create_run(user="alice")
    place = api.get(f"/runs/{second['id']}", user="bob").json()["queue"]
    # Nobody was served: alice's older job first, then bob's, then alice's second run.
    assert place == {"position": 2, "queued": 3, "running_jobs": 0, "running_run_ids": []}
    claim = api.claim()
    assert claim.run_id == first["id"]
    body = api.get(f"/runs/{third['id']}").json()
    # Alice was just served, so bob's run goes next and hers waits behind it.
    assert body["queue"] == {
        "position": 2,
        "queued": 2,
        "running_jobs": 1,
        "running_run_ids": [first["id"]],
    }
    assert body["jobs"][0]["queue_position"] == 2
    running = api.get(f"/runs/{first['id']}").json()
    assert running["queue"] is None and running["jobs"][0]["queue_position"] is None
    listed = {r["id"]: r["queue"] for r in api.get("/runs", user="admin").json()["data"]}
    assert listed[second["id"]]["position"] == 1 and listed[first["id"]] is None
    api.post(f"/runs/{third['id']}/cancel")
    assert api.get(f"/runs/{third['id']}").json()["queue"] is None
