"""Queue contract: one test class run on a SQLite file and on PostgreSQL.

Leases, retries, reaping, fencing of a worker whose lease was taken over, idempotent metric
points, seq ordering under concurrent writers, cancellation and the derived run status.
"""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from backend.app import queue
from backend.app.db.models import Artifact, Job, MetricPoint, Preference, Run
from backend.app.db.session import session_scope
from tests.backend._queue_helpers import (
    DIALECTS,
    clear,
    database,
    expire_lease,
    job_row,
    make_run,
    metric_rows,
    points,
    preference_ids,
    run_status,
    session_factory,
)

LEASE = 30.0


@pytest.fixture(scope="module", params=DIALECTS)
def db_url(request, tmp_path_factory):
    with database(request.param, tmp_path_factory.mktemp("queue")) as url:
        yield url


@pytest.fixture
def factory(db_url):
    with session_factory(db_url) as made:
        clear(made)
        yield made


def _claim(factory, worker="w1", lease=LEASE):
    claimed = queue.claim(factory, worker=worker, device="cpu", lease_seconds=lease)
    assert claimed is not None
    return claimed


class TestEnqueue:
    def test_rows_get_their_job_and_stack_position(self, factory):
        run_id, (job_id,) = make_run(factory, prefs_per_job=3, epochs=7, max_attempts=4)
        job = job_row(factory, job_id)
        assert (job.state, job.epochs, job.max_attempts, job.attempts) == ("queued", 7, 4, 0)
        with session_scope(factory) as session:
            rows = session.execute(
                select(Preference.index, Preference.position).where(Preference.job_id == job_id)
            ).all()
        assert sorted(rows) == [(0, 0), (1, 1), (2, 2)]
        assert run_status(factory, run_id) == "queued"

    def test_vectors_become_rows_with_the_next_indices_and_warm_start(self, factory):
        run_id, (first,) = make_run(factory, prefs_per_job=2)
        neighbour = preference_ids(factory, first)[1]
        with session_scope(factory) as session:
            run = session.get(Run, run_id)
            job = queue.enqueue(
                session,
                run=run,
                preferences=[[0.2, 0.8], [0.1, 0.9]],
                epochs=2,
                warm_start={"3": neighbour},
            )
            new = {p.index: p for p in job.preferences}
            assert sorted(new) == [2, 3]
            assert [new[2].position, new[3].position] == [0, 1]
            assert job.warm_start == {str(new[3].id): neighbour}
            assert new[3].warm_started_from == neighbour
            assert new[2].warm_started_from is None

    def test_a_finished_run_is_queued_again_by_new_work(self, factory):
        run_id, _ = make_run(factory)
        claimed = _claim(factory)
        assert queue.finish(factory, claimed.job_id, claimed.lease_token)
        assert run_status(factory, run_id) == "finished"
        with session_scope(factory) as session:
            queue.enqueue(session, run=session.get(Run, run_id), preferences=[[0.5, 0.5]], epochs=1)
        assert run_status(factory, run_id) == "queued"

    def test_bad_arguments_are_rejected(self, factory):
        run_id, _ = make_run(factory)
        with session_scope(factory) as session:
            run = session.get(Run, run_id)
            with pytest.raises(ValueError, match="at least one"):
                queue.enqueue(session, run=run, preferences=[], epochs=1)
            with pytest.raises(ValueError, match="epochs"):
                queue.enqueue(session, run=run, preferences=[[1.0, 0.0]], epochs=0)
            with pytest.raises(ValueError, match="warm_start"):
                queue.enqueue(
                    session, run=run, preferences=[[1.0, 0.0]], epochs=1, warm_start={"99": 1}
                )
            session.rollback()


class TestLeases:
    def test_claim_renew_finish(self, factory):
        run_id, (job_id,) = make_run(factory)
        before = datetime.now(UTC)
        claimed = _claim(factory, worker="host:1")
        assert (claimed.job_id, claimed.run_id) == (job_id, run_id)
        assert (claimed.attempts, claimed.lease_token, claimed.epochs) == (1, 1, 3)
        job = job_row(factory, job_id)
        assert (job.state, job.lease_owner, job.worker, job.device) == (
            "running",
            "host:1",
            "host:1",
            "cpu",
        )
        assert job.started_at is not None and job.heartbeat_at is not None
        # The database's clock and ours agree to well within the lease.
        assert abs(job.lease_expires_at - (before + timedelta(seconds=LEASE))).total_seconds() < 5
        assert run_status(factory, run_id) == "running"

        assert queue.renew(factory, job_id, claimed.lease_token, lease_seconds=2 * LEASE)
        renewed = job_row(factory, job_id)
        assert renewed.lease_expires_at > job.lease_expires_at + timedelta(seconds=LEASE / 2)

        assert queue.finish(factory, job_id, claimed.lease_token)
        done = job_row(factory, job_id)
        assert (done.state, done.lease_owner, done.lease_expires_at) == ("finished", None, None)
        assert done.finished_at is not None
        assert run_status(factory, run_id) == "finished"
        assert queue.claim(factory, worker="w", device="cpu", lease_seconds=LEASE) is None
        assert queue.renew_status(factory, job_id, 1, lease_seconds=LEASE) is queue.LeaseStatus.LOST

    def test_claims_oldest_first_and_never_twice(self, factory):
        _, job_ids = make_run(factory, jobs=3)
        got = [_claim(factory, worker=f"w{i}").job_id for i in range(3)]
        assert got == job_ids
        assert queue.claim(factory, worker="w", device="cpu", lease_seconds=LEASE) is None

    def test_fail_retries_then_fails_keeping_the_error(self, factory):
        run_id, (job_id,) = make_run(factory, max_attempts=2)
        first = _claim(factory)
        assert queue.fail(factory, job_id, first.lease_token, "boom 1") == "queued"
        job = job_row(factory, job_id)
        assert (job.state, job.error, job.lease_owner, job.finished_at) == (
            "queued",
            "boom 1",
            None,
            None,
        )
        assert run_status(factory, run_id) == "queued"
        second = _claim(factory)
        assert (second.attempts, second.lease_token) == (2, 2)
        assert queue.fail(factory, job_id, second.lease_token, "boom 2\nTraceback") == "failed"
        job = job_row(factory, job_id)
        assert (job.state, job.error) == ("failed", "boom 2\nTraceback")
        assert job.finished_at is not None
        assert run_status(factory, run_id) == "failed"
        assert queue.claim(factory, worker="w", device="cpu", lease_seconds=LEASE) is None

    def test_release_hands_back_without_counting_the_attempt(self, factory):
        _, (job_id,) = make_run(factory)
        first = _claim(factory)
        assert queue.release(factory, job_id, first.lease_token)
        job = job_row(factory, job_id)
        assert (job.state, job.attempts, job.lease_token) == ("queued", 0, 1)
        second = _claim(factory)
        assert (second.attempts, second.lease_token) == (1, 2)

    def test_expired_lease_is_reaped_and_reclaimed(self, factory):
        run_id, (job_id,) = make_run(factory)
        old = _claim(factory, worker="old")
        assert queue.reap_expired(factory) == 0  # not expired yet
        expire_lease(factory, job_id)
        assert queue.reap_expired(factory) == 1
        job = job_row(factory, job_id)
        assert job.state == "queued" and job.error.startswith("lease expired")
        assert run_status(factory, run_id) == "queued"
        new = _claim(factory, worker="new")
        assert (new.attempts, new.lease_token) == (2, old.lease_token + 1)
        assert queue.reap_expired(factory) == 0

    def test_reaping_the_last_attempt_fails_the_job(self, factory):
        run_id, (job_id,) = make_run(factory, max_attempts=1)
        _claim(factory)
        expire_lease(factory, job_id)
        assert queue.reap_expired(factory) == 1
        assert job_row(factory, job_id).state == "failed"
        assert run_status(factory, run_id) == "failed"

    def test_an_expired_but_unreaped_lease_can_still_be_renewed(self, factory):
        _, (job_id,) = make_run(factory)
        claimed = _claim(factory)
        expire_lease(factory, job_id)
        assert queue.renew(factory, job_id, claimed.lease_token, lease_seconds=LEASE)
        assert queue.reap_expired(factory) == 0


class TestOutages:
    """A holder that lost the database gives the claim's attempt back (``refund_attempt``)."""

    def test_the_reaper_keeps_host_names_out_of_the_stored_error(self, factory):
        host = socket.gethostname()
        _, (job_id,) = make_run(factory)
        _claim(factory, worker=f"{host}:4242/cpu#0")
        expire_lease(factory, job_id)
        assert queue.reap_expired(factory) == 1
        job = job_row(factory, job_id)
        assert job.error.startswith("lease expired") and host not in job.error

    def test_a_reaped_last_attempt_is_revived_and_not_counted(self, factory):
        run_id, (job_id,) = make_run(factory, max_attempts=1)
        claimed = _claim(factory)
        expire_lease(factory, job_id)
        assert queue.reap_expired(factory) == 1
        assert job_row(factory, job_id).state == "failed"
        assert queue.refund_attempt(factory, job_id, claimed.lease_token)
        job = job_row(factory, job_id)
        assert (job.state, job.attempts, job.finished_at) == ("queued", 0, None)
        assert "database" in job.error
        assert run_status(factory, run_id) == "queued"
        # Idempotent: a retried call (its answer lost in a new outage) changes nothing.
        assert not queue.refund_attempt(factory, job_id, claimed.lease_token)
        assert job_row(factory, job_id).attempts == 0
        assert _claim(factory).attempts == 1

    def test_an_abandoned_claim_that_was_not_reaped_yet_goes_back_to_the_queue(self, factory):
        run_id, (job_id,) = make_run(factory)
        claimed = _claim(factory)
        assert queue.refund_attempt(factory, job_id, claimed.lease_token)
        job = job_row(factory, job_id)
        assert (job.state, job.attempts, job.lease_owner, job.lease_expires_at) == (
            "queued",
            0,
            None,
            None,
        )
        assert run_status(factory, run_id) == "queued"
        assert not queue.refund_attempt(factory, job_id, claimed.lease_token)
        assert job_row(factory, job_id).attempts == 0
        # The old holder's lease is over: it can neither renew nor write.
        assert not queue.renew(factory, job_id, claimed.lease_token, lease_seconds=LEASE)

    def test_a_claim_reaped_and_taken_over_meanwhile_is_uncounted_too(self, factory):
        _, (job_id,) = make_run(factory, max_attempts=3)
        first = _claim(factory, worker="cut-off")
        expire_lease(factory, job_id)
        assert queue.reap_expired(factory) == 1
        second = _claim(factory, worker="other")
        assert second.attempts == 2
        assert queue.refund_attempt(factory, job_id, first.lease_token)
        job = job_row(factory, job_id)
        assert (job.state, job.attempts, job.lease_owner) == ("running", 1, "other")
        assert queue.renew(factory, job_id, second.lease_token, lease_seconds=LEASE)
        assert not queue.refund_attempt(factory, job_id, first.lease_token)
        assert job_row(factory, job_id).attempts == 1

    @pytest.mark.parametrize("ending", ["fail", "finish", "release"])
    def test_a_claim_its_holder_ended_itself_is_never_refunded(self, factory, ending):
        _, (job_id,) = make_run(factory)
        claimed = _claim(factory)
        if ending == "fail":
            assert queue.fail(factory, job_id, claimed.lease_token, "boom") == "queued"
        elif ending == "finish":
            assert queue.finish(factory, job_id, claimed.lease_token)
        else:
            assert queue.release(factory, job_id, claimed.lease_token)
        before = job_row(factory, job_id)
        assert not queue.refund_attempt(factory, job_id, claimed.lease_token)
        after = job_row(factory, job_id)
        assert (after.state, after.attempts, after.error) == (
            before.state,
            before.attempts,
            before.error,
        )

    def test_a_cancelled_run_stays_cancelled(self, factory):
        run_id, (job_id,) = make_run(factory)
        claimed = _claim(factory)
        with session_scope(factory) as session:
            queue.request_cancel(session, run_id)
        assert queue.refund_attempt(factory, job_id, claimed.lease_token)
        assert job_row(factory, job_id).state == "cancelled"
        assert run_status(factory, run_id) == "cancelled"

    def test_an_unknown_job(self, factory):
        assert not queue.refund_attempt(factory, 10**9, 1)


class TestFencing:
    def test_old_holder_writes_nothing_after_takeover(self, factory):
        run_id, (job_id,) = make_run(factory)
        prefs = preference_ids(factory, job_id)
        old = _claim(factory, worker="old")
        assert queue.record_metrics(factory, job_id, old.lease_token, points(prefs, 1))
        expire_lease(factory, job_id)
        assert queue.reap_expired(factory) == 1
        new = _claim(factory, worker="new")

        assert not queue.record_metrics(factory, job_id, old.lease_token, points(prefs, 2))
        assert None is queue.record_artifact(
            factory,
            job_id,
            old.lease_token,
            kind="checkpoint",
            epoch=2,
            path="x",
            sha256="0" * 64,
            size=1,
        )
        assert not queue.record_divergence(factory, job_id, old.lease_token, prefs[0], 2)
        assert not queue.drop_artifacts(factory, job_id, old.lease_token, [])
        assert queue.renew_status(factory, job_id, old.lease_token, lease_seconds=LEASE) is (
            queue.LeaseStatus.LOST
        )
        assert not queue.finish(factory, job_id, old.lease_token)
        assert queue.fail(factory, job_id, old.lease_token, "late") is None
        assert not queue.release(factory, job_id, old.lease_token)
        assert not queue.cancel_running(factory, job_id, old.lease_token)

        job = job_row(factory, job_id)
        assert (job.state, job.lease_owner, job.lease_token) == ("running", "new", new.lease_token)
        assert [(r.epoch, r.preference_id) for r in metric_rows(factory, run_id)] == [
            (1, prefs[0]),
            (1, prefs[1]),
        ]
        with session_scope(factory) as session:
            assert session.scalar(select(func.count(Artifact.id))) == 0
            assert not any(session.scalars(select(Preference.diverged)))

        assert queue.record_metrics(factory, job_id, new.lease_token, points(prefs, 2))
        assert queue.finish(factory, job_id, new.lease_token)

    def test_writes_after_the_job_ended_are_rejected(self, factory):
        _, (job_id,) = make_run(factory)
        prefs = preference_ids(factory, job_id)
        claimed = _claim(factory)
        assert queue.finish(factory, job_id, claimed.lease_token)
        assert not queue.record_metrics(factory, job_id, claimed.lease_token, points(prefs, 4))

    def test_points_of_another_job_are_refused(self, factory):
        _, (job_a, job_b) = make_run(factory, jobs=2)
        claimed = _claim(factory)
        assert claimed.job_id == job_a
        with pytest.raises(ValueError, match="do not belong"):
            queue.record_metrics(
                factory, job_a, claimed.lease_token, points(preference_ids(factory, job_b), 1)
            )


class TestMetricsAndArtifacts:
    def test_metric_points_are_idempotent_per_preference_epoch_split(self, factory):
        run_id, (job_id,) = make_run(factory)
        prefs = preference_ids(factory, job_id)
        claimed = _claim(factory)
        token = claimed.lease_token
        assert queue.record_metrics(factory, job_id, token, points(prefs, 1, value=1.0))
        assert queue.record_metrics(factory, job_id, token, points(prefs, 2, value=2.0))
        first = metric_rows(factory, run_id)
        # A replayed epoch (different numbers, as after a crash) and an exact duplicate.
        assert queue.record_metrics(factory, job_id, token, points(prefs, 2, value=9.0))
        assert queue.record_metrics(factory, job_id, token, points(prefs, 1, value=1.0))
        test_split = [
            queue.MetricIn(p, 2, "test", [3.0, float("nan")], {"acc": [float("inf"), 0.1]})
            for p in prefs
        ]
        assert queue.record_metrics(factory, job_id, token, test_split)
        rows = metric_rows(factory, run_id)
        assert [(r.seq, r.losses) for r in rows[: len(first)]] == [(r.seq, r.losses) for r in first]
        keys = [(r.preference_id, r.epoch, r.split) for r in rows]
        assert len(keys) == len(set(keys)) == 3 * len(prefs)
        assert {tuple(r.losses) for r in rows if r.epoch == 2 and r.split == "train"} == {
            (2.0, 2.5)
        }
        # Non-finite values (a diverged model) are stored as JSON null.
        assert {tuple(r.losses) for r in rows if r.split == "test"} == {(3.0, None)}
        assert {tuple(r.metrics["acc"]) for r in rows if r.split == "test"} == {(None, 0.1)}
        assert job_row(factory, job_id).epoch == 2

    def test_seq_follows_insertion_order(self, factory):
        run_id, (job_id,) = make_run(factory)
        prefs = preference_ids(factory, job_id)
        claimed = _claim(factory)
        for epoch in range(1, 6):
            queue.record_metrics(factory, job_id, claimed.lease_token, points(prefs, epoch))
        rows = metric_rows(factory, run_id)
        assert [r.epoch for r in rows] == sorted(r.epoch for r in rows)

    def test_metric_inserts_wait_for_the_run_lock(self, db_url, factory):
        run_id, (job_id,) = make_run(factory)
        prefs = preference_ids(factory, job_id)
        claimed = _claim(factory)
        done = threading.Event()
        with session_factory(db_url) as other:
            blocker = other()
            try:
                if blocker.get_bind().dialect.name == "sqlite":
                    blocker.connection().exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    blocker.execute(
                        text("SELECT id FROM runs WHERE id = :r FOR NO KEY UPDATE"), {"r": run_id}
                    )
                writer = threading.Thread(
                    target=lambda: (
                        done.set()
                        if queue.record_metrics(
                            factory, job_id, claimed.lease_token, points(prefs, 1)
                        )
                        else None
                    )
                )
                writer.start()
                assert not done.wait(1.0), "the insert did not wait for the run lock"
            finally:
                blocker.commit()
                blocker.close()
            writer.join(30)
        assert done.is_set()

    def test_a_poller_following_seq_never_misses_a_row(self, factory):
        """Four workers write epochs of one run concurrently while a client polls ``after``."""
        run_id, job_ids = make_run(factory, jobs=4, prefs_per_job=2)
        claims = [_claim(factory, worker=f"w{i}") for i in range(4)]
        epochs = 15
        seen: dict[int, tuple[int, int, str]] = {}
        writers_done = threading.Event()
        errors: list[BaseException] = []

        def write(c):
            try:
                prefs = preference_ids(factory, c.job_id)
                for epoch in range(1, epochs + 1):
                    assert queue.record_metrics(
                        factory, c.job_id, c.lease_token, points(prefs, epoch)
                    )
            except BaseException as error:  # surfaced below
                errors.append(error)

        def poll():
            after = 0
            while True:
                finished = writers_done.is_set()
                with session_scope(factory) as session:
                    rows = session.execute(
                        select(
                            MetricPoint.seq,
                            MetricPoint.preference_id,
                            MetricPoint.epoch,
                            MetricPoint.split,
                        )
                        .where(MetricPoint.run_id == run_id, MetricPoint.seq > after)
                        .order_by(MetricPoint.seq)
                    ).all()
                for seq, pref, epoch, split in rows:
                    seen[seq] = (pref, epoch, split)
                    after = seq
                if finished:
                    return

        threads = [threading.Thread(target=write, args=(c,)) for c in claims]
        poller = threading.Thread(target=poll)
        poller.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        writers_done.set()
        poller.join(60)
        assert not errors, errors
        stored = {r.seq: (r.preference_id, r.epoch, r.split) for r in metric_rows(factory, run_id)}
        assert len(stored) == 4 * 2 * epochs
        assert seen == stored
        assert sorted(job_ids) == sorted(c.job_id for c in claims)

    def test_artifact_rows_are_replaced_for_a_rewritten_epoch(self, factory):
        _, (job_id,) = make_run(factory)
        claimed = _claim(factory)
        ids = set()
        for sha in ("a" * 64, "b" * 64):
            ids.add(
                queue.record_artifact(
                    factory,
                    job_id,
                    claimed.lease_token,
                    kind="checkpoint",
                    epoch=3,
                    path=f"runs/1/jobs/{job_id}/checkpoints/ckpt-epoch0003.pt",
                    sha256=sha,
                    size=10,
                )
            )
        with session_scope(factory) as session:
            rows = session.scalars(select(Artifact).where(Artifact.job_id == job_id)).all()
            assert [(r.epoch, r.sha256) for r in rows] == [(3, "b" * 64)]
            stale = rows[0].id
        assert ids == {stale}
        assert queue.drop_artifacts(factory, job_id, claimed.lease_token, [stale])
        with session_scope(factory) as session:
            assert session.scalar(select(func.count(Artifact.id))) == 0

    def test_divergence_is_recorded_on_the_preference(self, factory):
        _, (job_id,) = make_run(factory)
        prefs = preference_ids(factory, job_id)
        claimed = _claim(factory)
        assert queue.record_divergence(factory, job_id, claimed.lease_token, prefs[1], 4)
        with session_scope(factory) as session:
            rows = session.execute(
                select(Preference.id, Preference.diverged, Preference.diverged_epoch)
                .where(Preference.job_id == job_id)
                .order_by(Preference.position)
            ).all()
        assert [tuple(r) for r in rows] == [(prefs[0], False, None), (prefs[1], True, 4)]


class TestCancel:
    def test_queued_jobs_cancel_at_once_running_ones_through_their_holder(self, factory):
        run_id, (running, queued_1, queued_2) = make_run(factory, jobs=3)
        claimed = _claim(factory)
        assert claimed.job_id == running
        with session_scope(factory) as session:
            queue.request_cancel(session, run_id)
        assert [job_row(factory, j).state for j in (running, queued_1, queued_2)] == [
            "running",
            "cancelled",
            "cancelled",
        ]
        assert run_status(factory, run_id) == "running"
        assert queue.claim(factory, worker="w", device="cpu", lease_seconds=LEASE) is None
        status = queue.renew_status(factory, running, claimed.lease_token, lease_seconds=LEASE)
        assert status is queue.LeaseStatus.CANCEL
        assert not queue.renew(factory, running, claimed.lease_token, lease_seconds=LEASE)
        assert queue.cancel_running(factory, running, claimed.lease_token)
        assert job_row(factory, running).state == "cancelled"
        assert run_status(factory, run_id) == "cancelled"
        with session_scope(factory) as session:
            queue.request_cancel(session, run_id)  # idempotent
            with pytest.raises(ValueError, match="cancelled"):
                queue.enqueue(session, run=session.get(Run, run_id), preferences=[[1, 0]], epochs=1)
            session.rollback()

    def test_a_run_with_only_queued_jobs_is_cancelled_immediately(self, factory):
        run_id, job_ids = make_run(factory, jobs=2)
        with session_scope(factory) as session:
            queue.request_cancel(session, run_id)
        assert run_status(factory, run_id) == "cancelled"
        assert {job_row(factory, j).state for j in job_ids} == {"cancelled"}

    def test_a_failure_or_expiry_of_a_cancelled_run_cancels_the_job(self, factory):
        run_id, (job_a, job_b) = make_run(factory, jobs=2)
        a = _claim(factory)
        b = _claim(factory)
        with session_scope(factory) as session:
            queue.request_cancel(session, run_id)
        assert queue.fail(factory, job_a, a.lease_token, "stopped") == "cancelled"
        expire_lease(factory, job_b)
        assert queue.reap_expired(factory) == 1
        assert job_row(factory, job_b).state == "cancelled"
        assert run_status(factory, run_id) == "cancelled"
        assert b.job_id == job_b

    def test_unknown_run(self, factory):
        with session_scope(factory) as session, pytest.raises(LookupError):
            queue.request_cancel(session, 10**9)


class TestRunStatus:
    @pytest.mark.parametrize(
        ("states", "cancel", "expected"),
        [
            (["running", "queued", "failed"], False, "running"),
            (["running", "queued"], True, "running"),
            (["queued", "finished"], False, "queued"),
            (["finished", "failed"], False, "failed"),
            (["finished", "failed"], True, "cancelled"),
            (["finished", "cancelled"], True, "cancelled"),
            (["finished", "finished"], False, "finished"),
        ],
    )
    def test_status_follows_the_jobs(self, factory, states, cancel, expected):
        run_id, job_ids = make_run(factory, jobs=len(states))
        with session_scope(factory) as session:
            for job_id, state in zip(job_ids, states, strict=True):
                session.get(Job, job_id).state = state
            session.get(Run, run_id).cancel_requested = cancel
        with session_scope(factory) as session:
            assert queue.refresh_run_status(session, run_id) == expected
        assert run_status(factory, run_id) == expected
