"""The worker supervisor with real training processes on the synthetic ``concave`` problem.

A job trained to the end; a worker host that dies mid-epoch (supervisor and child SIGKILLed)
and whose job another supervisor resumes after the lease expired; a frozen supervisor whose
job is taken over and whose late results are all rejected; a corrupt or missing newest
checkpoint; warm starts from a neighbour's checkpoint; cancellation; a PostgreSQL restart under
a running worker.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time

import psutil
import pytest
from sqlalchemy.engine import make_url

from backend.app import queue
from backend.app.db.models import Run
from backend.app.db.session import DatabaseError, session_scope
from backend.app.storage import ArtifactStore
from backend.app.worker import run_worker
from tests.backend._queue_helpers import (
    DIALECTS,
    database,
    job_row,
    make_run,
    metric_rows,
    preference_ids,
    run_status,
    session_factory,
)
from tests.backend._worker_helpers import (
    QUICK,
    SupervisorProcess,
    assert_checkpoints_valid,
    checkpoint_rows,
    own_training_children,
    supervisor_thread,
    wait_for,
    worker_settings,
)
from tests.conftest import require
from tests.settings import POSTGRES_URL

SQLITE = [p for p in DIALECTS if p.id == "sqlite"]
POSTGRES = [p for p in DIALECTS if p.id == "postgres"]


@pytest.fixture
def db(request, tmp_path):
    """(url, session factory) of a fresh migrated database of the requested dialect."""
    with database(request.param, tmp_path) as url, session_factory(url) as factory:
        yield url, factory


def _complete(factory, run_id, job_id, epochs, splits=("train",)):
    """Every (preference, epoch, split) exactly once, and nothing else."""
    keys = [(r.preference_id, r.epoch, r.split) for r in metric_rows(factory, run_id)]
    expected = [
        (p, e, s)
        for p in preference_ids(factory, job_id)
        for e in range(1, epochs + 1)
        for s in splits
    ]
    assert sorted(keys) == sorted(expected)


def _quietly(read):
    """A database read for ``wait_for`` that treats an outage as "not yet"."""

    def attempt():
        try:
            return read()
        except DatabaseError:
            return None

    return attempt


@pytest.mark.parametrize("db", DIALECTS, indirect=True)
def test_a_job_is_trained_to_the_end(db, tmp_path):
    url, factory = db
    run_id, (job_id,) = make_run(factory, prefs_per_job=3, epochs=4, training=QUICK)
    settings = worker_settings(tmp_path, url)

    assert run_worker(settings, "cpu", once=True) == 1

    job = job_row(factory, job_id)
    assert (job.state, job.attempts, job.epoch, job.error) == ("finished", 1, 4, None)
    assert job.lease_owner is None and job.device == "cpu"
    assert run_status(factory, run_id) == "finished"
    _complete(factory, run_id, job_id, epochs=4)
    assert all(len(r.losses) == 2 and None not in r.losses for r in metric_rows(factory, run_id))
    rows = checkpoint_rows(factory, job_id)
    assert [r.epoch for r in rows] == [3, 4]  # keep_checkpoints=2: pruned files lose their rows
    store = ArtifactStore(settings.artifact_root)
    assert_checkpoints_valid(store, rows)
    on_disk = sorted(p.name for p in store.checkpoint_dir(run_id, job_id).iterdir())
    assert on_disk == ["ckpt-epoch0003.pt", "ckpt-epoch0004.pt"]
    assert own_training_children() == []
    assert run_worker(settings, "cpu", once=True) == 0  # nothing left to do


@pytest.mark.slow
@pytest.mark.parametrize("db", SQLITE, indirect=True)
def test_a_crashed_worker_host_is_resumed_elsewhere_after_its_lease_expires(db, tmp_path):
    url, factory = db
    epochs = 10
    run_id, (job_id,) = make_run(
        factory, prefs_per_job=2, epochs=epochs, training={"epochs": epochs, "steps_per_epoch": 8}
    )
    settings = worker_settings(tmp_path, url, lease_seconds=3.0)

    with SupervisorProcess(settings, tmp_path / "a.log") as first:
        wait_for(
            lambda: job_row(factory, job_id).epoch >= 3 and checkpoint_rows(factory, job_id),
            90,
            "three epochs and a checkpoint",
        )
        child = wait_for(first.training_child, 10, "the training process")
        before = {
            (r.preference_id, r.epoch, r.split): (r.seq, r.losses)
            for r in metric_rows(factory, run_id)
        }
        # The host dies mid-epoch: the supervisor and its training process, without warning.
        os.kill(first.pid, signal.SIGKILL)
        child.kill()
        first.proc.wait(10)
        psutil.wait_procs([child], timeout=10)
    crashed = job_row(factory, job_id)
    assert crashed.state == "running" and crashed.epoch < epochs

    with SupervisorProcess(settings, tmp_path / "b.log") as second:
        wait_for(lambda: job_row(factory, job_id).state == "finished", 120, "the job to finish")
        log = second.log()

    job = job_row(factory, job_id)
    assert (job.attempts, job.lease_token) == (2, 2)
    assert job.worker.split("/")[0].endswith(f":{second.pid}")
    assert "reaped 1 job(s)" in log
    assert "resuming after epoch" in log
    after = {
        (r.preference_id, r.epoch, r.split): (r.seq, r.losses) for r in metric_rows(factory, run_id)
    }
    assert {k: after[k] for k in before} == before  # nothing stored before the crash changed
    _complete(factory, run_id, job_id, epochs)
    rows = checkpoint_rows(factory, job_id)
    assert rows[-1].epoch == epochs
    assert_checkpoints_valid(ArtifactStore(settings.artifact_root), rows)


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
@pytest.mark.parametrize("db", POSTGRES, indirect=True)
def test_a_frozen_supervisor_loses_its_job_and_writes_nothing_after_takeover(db, tmp_path):
    url, factory = db
    # Long enough that the first training process could not simply finish while frozen: about
    # 0.3 s per epoch on an idle CPU, so the rest of the run takes well over a lease.
    epochs = 30
    run_id, (job_id,) = make_run(
        factory,
        prefs_per_job=2,
        epochs=epochs,
        training={"epochs": epochs, "steps_per_epoch": 100},
    )
    settings = worker_settings(tmp_path, url, lease_seconds=3.0)

    with SupervisorProcess(settings, tmp_path / "a.log") as first:
        wait_for(
            lambda: job_row(factory, job_id).epoch >= 2 and checkpoint_rows(factory, job_id),
            90,
            "two epochs and a checkpoint",
        )
        child = wait_for(first.training_child, 10, "the training process")
        os.kill(first.pid, signal.SIGSTOP)  # frozen: no heartbeats, no kills, no writes
        try:
            frozen = time.monotonic()
            # Without renewals the training process stops itself within a lease, so it cannot
            # write into the checkpoint directory that the next holder uses.
            wait_for(lambda: _gone(child), 10, "the unsupervised training process to exit")
            assert time.monotonic() - frozen < settings.lease_seconds + 2
            with SupervisorProcess(settings, tmp_path / "b.log") as second:
                wait_for(lambda: job_row(factory, job_id).state == "finished", 120, "takeover")
            taken_over = job_row(factory, job_id)
            points = [(r.seq, r.epoch, r.losses) for r in metric_rows(factory, run_id)]
            checkpoints = [(r.id, r.epoch, r.sha256) for r in checkpoint_rows(factory, job_id)]
        finally:
            os.kill(first.pid, signal.SIGCONT)
        # The child had stopped itself for lack of renewals (status 70: not finished, not
        # killed); the thawed supervisor reaps it and gives the job up.
        exited = f"training process {child.pid} exited with status"
        wait_for(lambda: exited in first.log(), 30, "the thawed supervisor to give up")
        assert f"{exited} 70" in first.log()
        assert f"job {job_id} abandoned" in first.log()
        assert first.proc.poll() is None, "the thawed supervisor must keep running"

    job = job_row(factory, job_id)
    assert (job.state, job.attempts, job.lease_token) == ("finished", 2, 2)
    assert job.worker.split("/")[0].endswith(f":{second.pid}")
    # The first supervisor's buffered results and final transition were all rejected.
    assert (job.finished_at, job.error, job.epoch) == (
        taken_over.finished_at,
        taken_over.error,
        taken_over.epoch,
    )
    assert [(r.seq, r.epoch, r.losses) for r in metric_rows(factory, run_id)] == points
    assert [(r.id, r.epoch, r.sha256) for r in checkpoint_rows(factory, job_id)] == checkpoints
    _complete(factory, run_id, job_id, epochs)
    assert_checkpoints_valid(
        ArtifactStore(settings.artifact_root), checkpoint_rows(factory, job_id)
    )


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flip", "delete"])
@pytest.mark.parametrize("db", SQLITE, indirect=True)
def test_a_bad_newest_checkpoint_restarts_from_the_previous_good_one(db, tmp_path, damage, caplog):
    url, factory = db
    epochs = 12
    run_id, (job_id,) = make_run(
        factory, prefs_per_job=2, epochs=epochs, training={"epochs": epochs, "steps_per_epoch": 6}
    )
    settings = worker_settings(tmp_path, url)
    store = ArtifactStore(settings.artifact_root)

    # A graceful shutdown mid-run hands the job back with its checkpoints recorded.
    with supervisor_thread(settings):
        wait_for(lambda: len(checkpoint_rows(factory, job_id)) >= 2, 60, "two checkpoints")
    job = job_row(factory, job_id)
    assert (job.state, job.attempts) == ("queued", 0)
    previous, newest = checkpoint_rows(factory, job_id)[-2:]
    path = store.resolve(newest.path)
    if damage == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.unlink()

    caplog.set_level(logging.INFO, logger="backend")
    assert run_worker(settings, "cpu", once=True) == 1

    assert job_row(factory, job_id).state == "finished"
    assert f"resuming after epoch {previous.epoch}" in caplog.text
    discarded = path.with_name(path.name + ".discarded")
    assert discarded.exists() == (damage == "flip")
    _complete(factory, run_id, job_id, epochs)
    rows = checkpoint_rows(factory, job_id)
    assert rows[-1].epoch == epochs
    assert_checkpoints_valid(store, rows)


@pytest.mark.parametrize("db", DIALECTS, indirect=True)
def test_cancel_stops_the_training_process_within_seconds(db, tmp_path):
    url, factory = db
    run_id, (job_id,) = make_run(
        factory, prefs_per_job=2, epochs=200, training={"epochs": 200, "steps_per_epoch": 4}
    )
    settings = worker_settings(tmp_path, url)
    with supervisor_thread(settings):
        wait_for(lambda: len(checkpoint_rows(factory, job_id)) >= 2, 60, "two checkpoints")
        (child,) = own_training_children()
        asked = time.monotonic()
        with session_scope(factory) as session:
            queue.request_cancel(session, run_id)
        gone, _ = psutil.wait_procs([child], timeout=10)
        stopped_after = time.monotonic() - asked
        assert gone, "the training process was not stopped"
        wait_for(lambda: job_row(factory, job_id).state == "cancelled", 20, "job cancelled")
    assert stopped_after < 4.0, f"took {stopped_after:.1f} s"
    job = job_row(factory, job_id)
    assert job.epoch < 200 and job.lease_owner is None
    assert run_status(factory, run_id) == "cancelled"
    rows = checkpoint_rows(factory, job_id)
    assert rows[-1].epoch >= job.epoch - 1  # the last checkpoint stays
    assert_checkpoints_valid(ArtifactStore(settings.artifact_root), rows)


def _cluster_online() -> bool:
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False)
    return any(
        line.split()[:2] == ["15", "main"] and "online" in line for line in out.stdout.splitlines()
    )


@pytest.mark.slow
@pytest.mark.parametrize("db", POSTGRES, indirect=True)
def test_a_postgres_restart_does_not_lose_the_job(db, tmp_path, caplog):
    url, factory = db
    local = make_url(POSTGRES_URL).host in ("127.0.0.1", "localhost")
    require(
        local and shutil.which("pg_ctlcluster") is not None and os.geteuid() == 0,
        "restarting PostgreSQL needs root and the local cluster 15/main (pg_ctlcluster)",
    )
    # About 0.5 s per epoch on an idle CPU: the training outlives the restart (a few seconds).
    epochs = 30
    run_id, (job_id,) = make_run(
        factory,
        prefs_per_job=2,
        epochs=epochs,
        training={"epochs": epochs, "steps_per_epoch": 150},
    )
    settings = worker_settings(tmp_path, url, lease_seconds=20.0, heartbeat_seconds=2.0)
    caplog.set_level(logging.WARNING, logger="backend")
    with supervisor_thread(settings):
        wait_for(lambda: job_row(factory, job_id).epoch >= 2, 60, "two epochs")
        (child,) = own_training_children()
        try:
            subprocess.run(["pg_ctlcluster", "15", "main", "restart"], check=True, timeout=120)
        finally:
            if not _cluster_online():
                subprocess.run(["pg_ctlcluster", "15", "main", "start"], check=False, timeout=120)
        # The training process kept going through the outage.
        assert child.is_running() and own_training_children() == [child]
        wait_for(
            _quietly(lambda: job_row(factory, job_id).state == "finished"), 120, "the job to finish"
        )
    assert "database unavailable" in caplog.text or "heartbeat of job" in caplog.text
    job = job_row(factory, job_id)
    assert (job.state, job.attempts, job.lease_token) == ("finished", 1, 1)
    _complete(factory, run_id, job_id, epochs)
    assert_checkpoints_valid(
        ArtifactStore(settings.artifact_root), checkpoint_rows(factory, job_id)
    )


@pytest.mark.parametrize("db", SQLITE, indirect=True)
def test_new_preferences_warm_start_from_the_newest_good_checkpoint_of_their_neighbour(
    db, tmp_path
):
    from pmtl_core.config import make_config
    from pmtl_core.problems import REGISTRY
    from pmtl_core.training import train

    url, factory = db
    run_id, (first,) = make_run(factory, prefs_per_job=2, epochs=4, training=QUICK)
    settings = worker_settings(tmp_path, url)
    store = ArtifactStore(settings.artifact_root)
    assert run_worker(settings, "cpu", once=True) == 1
    neighbour = preference_ids(factory, first)[1]  # stack position 1
    older, newest = checkpoint_rows(factory, first)
    path = store.resolve(newest.path)
    path.write_bytes(path.read_bytes()[:-16])  # truncated: the warm start must use `older`
    with session_scope(factory) as session:
        run = session.get(Run, run_id)
        job = queue.enqueue(
            session, run=run, preferences=[[0.3, 0.7]], epochs=2, warm_start={"2": neighbour}
        )
        second = job.id
        everyone = [p.vector for p in sorted(run.preferences, key=lambda p: p.index)]
    assert run_worker(settings, "cpu", once=True) == 1
    assert job_row(factory, second).state == "finished"

    stored = [r.losses for r in metric_rows(factory, run_id) if r.job_id == second]

    def epoch_one(init_from):
        seen = []
        config = make_config(
            REGISTRY["concave"].default_config, QUICK, {"seed": 0, "device": "cpu", "epochs": 1}
        )
        train(
            "concave",
            "pareto_mtl",
            [[0.3, 0.7]],
            config,
            all_preferences=everyone,
            init_from=init_from,
            callbacks=[
                type("Cb", (), {"on_epoch": lambda _, r: seen.append(r.points[0].losses)})()
            ],
        )
        return seen[0]

    warm = epoch_one([(store.resolve(older.path), 1)])
    cold = epoch_one(None)
    assert stored[0] == pytest.approx(warm, rel=1e-5)
    assert stored[0] != pytest.approx(cold, rel=1e-3)


def test_the_workers_download_setting_reaches_data_set_problems_only():
    from backend.app.worker_child import problem_options

    spec = {"problem": "multi_mnist", "problem_options": {"train_size": 64}, "download_data": True}
    assert problem_options(spec) == {"train_size": 64, "download": True}
    assert problem_options({**spec, "download_data": False}) == {"train_size": 64}
    function = {"problem": "concave", "problem_options": {}, "download_data": True}
    assert problem_options(function) == {}
