"""The worker supervisor with real training processes on the synthetic ``concave`` problem.

A job trained to the end; a worker host that dies mid-epoch (supervisor and child SIGKILLed)
and whose job another supervisor resumes after the lease expired; a frozen supervisor whose
job is taken over and whose late results are all rejected; a corrupt or missing newest
checkpoint; warm starts from a neighbour's checkpoint; cancellation; a PostgreSQL restart under
a running worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from backend.app import queue
from backend.app.db.models import Run
from backend.app.db.session import DatabaseError, session_scope
from backend.app.storage import ArtifactStore
from backend.app.worker import run_worker
from backend.app.worker.plan import load_plan as _load_plan
from backend.app.worker.runner import JobContext, JobRunner
from pmtl_core.problems import get_problem
from tests.backend._api import Api
from tests.backend._queue_helpers import (
    DIALECTS,
    database,
    expire_lease,
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
    cpu_load,
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
    on_disk = sorted(p.name for p in store.checkpoint_dir(run_id, job_id).glob("ckpt-*"))
    assert on_disk == ["ckpt-epoch0003.pt", "ckpt-epoch0004.pt"]
    assert own_training_children() == []
    assert run_worker(settings, "cpu", once=True) == 0  # nothing left to do


@pytest.mark.slow
@pytest.mark.parametrize("load", ["idle", "busy"])
@pytest.mark.parametrize("db", SQLITE, indirect=True)
def test_a_crashed_worker_host_is_resumed_elsewhere_after_its_lease_expires(db, tmp_path, load):
    url, factory = db
    epochs = 10
    run_id, (job_id,) = make_run(
        factory, prefs_per_job=2, epochs=epochs, training={"epochs": epochs, "steps_per_epoch": 8}
    )
    # A long lease that the test ends in the database: no real lease is waited out, so a busy
    # machine (every core taken by other processes) changes the timing, not the outcome.
    settings = worker_settings(tmp_path, url, lease_seconds=60.0)

    with (
        cpu_load() if load == "busy" else contextlib.nullcontext(),
        SupervisorProcess(settings, tmp_path / "a.log") as first,
    ):
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
        expire_lease(factory, job_id)  # nobody renews it any more: as if a lease went by

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


class _BehindThenKilled(JobRunner):
    """A supervisor that handles its training process's events ``lag`` epochs late (a slow
    database, say), and whose host dies (training process SIGKILLed, nothing more handled)
    when the checkpoint of epoch ``crash_at`` arrives. Deterministic: what is recorded at the
    crash does not depend on the machine's speed."""

    lag = 2
    crash_at = 6

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.held: list = []
        self.crashed = False

    def _handle(self, event):
        if self.crashed:
            return  # the events still in the pipe die with the host
        if not hasattr(event, "epoch"):  # start, finished, ...
            super()._handle(event)
            return
        epoch = int(event.epoch)
        if event.type == "checkpoint" and epoch >= self.crash_at:
            self.crashed = True
            self.training.kill()
            self.lease.lost = True  # the supervisor is gone too: it gives up without writing
            return
        self.held.append(event)
        ready = [e for e in self.held if int(e.epoch) <= epoch - self.lag]
        self.held = [e for e in self.held if int(e.epoch) > epoch - self.lag]
        for held in ready:
            super()._handle(held)


@pytest.mark.parametrize("db", SQLITE, indirect=True)
def test_a_supervisor_behind_its_training_then_killed_resumes_from_its_newest_checkpoint(
    db, tmp_path, caplog
):
    url, factory = db
    epochs = 12
    run_id, (job_id,) = make_run(
        factory, prefs_per_job=2, epochs=epochs, training={"epochs": epochs, "steps_per_epoch": 4}
    )
    settings = worker_settings(tmp_path, url, lease_seconds=60.0)
    store = ArtifactStore(settings.artifact_root)
    claim = queue.claim(factory, worker="host:1/cpu#0", device="cpu", lease_seconds=60.0)
    assert claim is not None
    with cpu_load():  # and a machine whose cores are all busy with something else
        runner = _BehindThenKilled(_context(factory, settings), claim, "cpu", time.monotonic())
        assert runner.run() == "abandoned"
    assert runner.crashed
    # Two epochs behind: checkpoints 1-4 were recorded, of which the newest two are kept.
    rows = checkpoint_rows(factory, job_id)
    assert [r.epoch for r in rows] == [3, 4]
    assert_checkpoints_valid(store, rows)
    assert job_row(factory, job_id).epoch == 4

    expire_lease(factory, job_id)  # the dead host's lease runs out
    assert queue.reap_expired(factory) == 1
    caplog.set_level(logging.INFO, logger="backend")
    assert run_worker(settings, "cpu", once=True) == 1

    assert "resuming after epoch 4" in caplog.text  # not from epoch 0
    job = job_row(factory, job_id)
    assert (job.state, job.attempts) == ("finished", 2)
    _complete(factory, run_id, job_id, epochs)
    rows = checkpoint_rows(factory, job_id)
    assert [r.epoch for r in rows] == [epochs - 1, epochs]
    assert_checkpoints_valid(store, rows)
    on_disk = sorted(p.name for p in store.checkpoint_dir(run_id, job_id).glob("ckpt-*.pt"))
    assert on_disk == [Path(store.resolve(r.path)).name for r in rows]


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
            expire_lease(factory, job_id)  # rather than waiting for the database lease
            with SupervisorProcess(settings, tmp_path / "b.log") as second:
                # Generous: other processes may keep every core busy (~20x slower epochs).
                wait_for(lambda: job_row(factory, job_id).state == "finished", 300, "takeover")
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


def _saw_outage(log_text: str) -> bool:
    """Whether the supervisor logged a failed database call."""
    return "database unavailable" in log_text or "heartbeat of job" in log_text


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
        # Stop the server and keep it down until the supervisor has met the outage (a restart
        # alone can fall between two of its database calls), then start it again.
        try:
            subprocess.run(["pg_ctlcluster", "15", "main", "stop"], check=True, timeout=120)
            wait_for(lambda: _saw_outage(caplog.text), 60, "the supervisor to meet the outage")
        finally:
            subprocess.run(["pg_ctlcluster", "15", "main", "start"], check=False, timeout=120)
        assert _cluster_online()
        # The training process kept going through the outage.
        assert child.is_running() and own_training_children() == [child]
        wait_for(
            _quietly(lambda: job_row(factory, job_id).state == "finished"), 300, "the job to finish"
        )
    assert _saw_outage(caplog.text)
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
    from pmtl_core.engine import train
    from pmtl_core.problems import REGISTRY

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
    from backend.app.worker.training import problem_options

    spec = {"problem": "multi_mnist", "problem_options": {"train_size": 64}, "download_data": True}
    assert problem_options(spec) == {"train_size": 64, "download": True}
    assert problem_options({**spec, "download_data": False}) == {
        "train_size": 64,
        "download": False,
    }
    # Whatever reached the database, the worker's setting decides (and its own data root).
    stored = {"train_size": 64, "download": True, "data_dir": "/elsewhere"}
    assert problem_options({**spec, "problem_options": stored, "download_data": False}) == {
        "train_size": 64,
        "download": False,
    }
    function = {"problem": "concave", "problem_options": {}, "download_data": True}
    assert problem_options(function) == {}


def _context(factory, settings, **overrides) -> JobContext:
    values = {
        "factory": factory,
        "store": ArtifactStore(settings.artifact_root),
        "lease_seconds": settings.lease_seconds,
        "heartbeat_seconds": settings.heartbeat_seconds,
        "poll_seconds": settings.worker_poll_seconds,
        "stop": threading.Event(),
        "download_data": settings.download_data,
    }
    values.update(overrides)
    return JobContext(**values)


@pytest.mark.parametrize("allowed", [True, False], ids=["download", "no-download"])
def test_the_workers_download_setting_decides_for_runs_created_through_the_api(tmp_path, allowed):
    from backend.app.worker.training import problem_options

    with database("sqlite", tmp_path) as url, Api.start(url, tmp_path / "api") as api:
        run = api.create_run(
            problem="multi_mnist",
            problem_options={"train_size": 64, "test_size": 32},
            training={"epochs": 1},
        )
        claim = api.claim()
        settings = worker_settings(tmp_path, url, download_data=allowed)
        plan = _load_plan(_context(api.factory, settings), claim, "cpu")
    # What the training process builds from the supervisor's spec.
    options = problem_options(plan.spec)
    problem = get_problem(plan.spec.problem, options)
    assert problem.download is allowed
    assert (problem.train_size, problem.test_size) == (64, 32)
    # The run keeps only what its client chose; the worker adds its own configuration.
    assert "download" not in run["problem_options"] and "data_dir" not in run["problem_options"]


DOTTED = "tests.backend._dotted_problem:make"


@pytest.mark.parametrize("db", SQLITE, indirect=True)
def test_a_dotted_path_problem_in_the_database_is_not_imported(db, tmp_path, monkeypatch):
    url, factory = db
    marker = tmp_path / "imported"
    monkeypatch.setenv("PMTL_TEST_DOTTED_MARKER", str(marker))
    run_id, (job_id,) = make_run(factory, problem=DOTTED, epochs=2, training=QUICK)

    assert run_worker(worker_settings(tmp_path, url), "cpu", once=True) == 1

    assert not marker.exists(), marker.read_text()
    job = job_row(factory, job_id)
    assert job.state == "failed"  # at once: another attempt would not change the answer
    assert job.attempts == 1 and job.epoch == 0
    assert DOTTED in job.error and "PMTL_ALLOW_DOTTED_PROBLEMS" in job.error
    assert run_status(factory, run_id) == "failed"
    assert own_training_children() == []


@pytest.mark.parametrize("db", SQLITE, indirect=True)
def test_an_operator_may_allow_dotted_path_problems(db, tmp_path, monkeypatch):
    url, factory = db
    marker = tmp_path / "imported"
    monkeypatch.setenv("PMTL_TEST_DOTTED_MARKER", str(marker))
    run_id, (job_id,) = make_run(factory, problem=DOTTED, epochs=2, training=QUICK)
    settings = worker_settings(tmp_path, url, allow_dotted_problems=True)

    assert run_worker(settings, "cpu", once=True) == 1

    assert marker.exists()
    assert job_row(factory, job_id).state == "finished"
    _complete(factory, run_id, job_id, epochs=2)


class _Outage:
    """A session factory whose database is unreachable (OperationalError) while ``down``."""

    def __init__(self, factory) -> None:
        self.factory = factory
        self.down = threading.Event()
        self.refused = 0

    def __call__(self):
        if self.down.is_set():
            self.refused += 1
            raise OperationalError(
                "SELECT 1", {}, ConnectionRefusedError("the database is down (simulated)")
            )
        return self.factory()


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped-elsewhere", "expired-locally"])
@pytest.mark.parametrize("db", DIALECTS, indirect=True)
def test_a_database_outage_does_not_use_up_the_jobs_attempts(db, tmp_path, reaped):
    url, factory = db
    # One attempt only: before, losing the database for a lease failed the job for good.
    run_id, (job_id,) = make_run(
        factory,
        prefs_per_job=2,
        epochs=200,
        max_attempts=1,
        training={"epochs": 200, "steps_per_epoch": 4},
    )
    settings = worker_settings(tmp_path, url, lease_seconds=60.0, heartbeat_seconds=0.2)
    outage = _Outage(factory)
    ctx = _context(outage, settings)
    claim = queue.claim(factory, worker="host:1/cpu#0", device="cpu", lease_seconds=60.0)
    assert claim is not None and claim.attempts == 1
    runner = JobRunner(ctx, claim, "cpu", time.monotonic())
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(runner.run()), daemon=True)
    thread.start()
    try:
        wait_for(lambda: job_row(factory, job_id).epoch >= 1, 60, "a first epoch")
        outage.down.set()
        wait_for(lambda: outage.refused >= 3, 20, "renewals failing")
        if reaped:
            # The lease runs out in the database and a worker that still reaches it reaps it.
            expire_lease(factory, job_id)
            assert queue.reap_expired(factory) == 1
            assert job_row(factory, job_id).state == "failed"  # its last attempt, for now
        else:
            # The supervisor's own clock says the lease is over: it stops the training.
            runner.lease.valid_until = time.monotonic() - 1
            wait_for(lambda: own_training_children() == [], 20, "the training process to stop")
        outage.down.clear()
        thread.join(60)
        assert not thread.is_alive()
    finally:
        outage.down.clear()
        ctx.stop.set()
        thread.join(60)
    assert outcome == ["abandoned"]
    job = job_row(factory, job_id)
    assert (job.state, job.attempts, job.lease_owner) == ("queued", 0, None)
    assert "database" in job.error
    assert run_status(factory, run_id) == "queued"
    again = queue.claim(factory, worker="host:2/cpu#0", device="cpu", lease_seconds=60.0)
    assert again is not None and (again.job_id, again.attempts) == (job_id, 1)


@pytest.mark.parametrize("db", SQLITE, indirect=True)
def test_a_training_error_is_stored_without_paths_host_names_or_traceback(db, tmp_path, caplog):
    url, factory = db
    run_id, (job_id,) = make_run(factory, epochs=2, max_attempts=1, training=QUICK)
    with session_scope(factory) as session:  # options the training process refuses
        session.get(Run, run_id).problem_options = {"dim": "/srv/secret/data on " + _HOST}
    caplog.set_level(logging.INFO, logger="backend")

    assert run_worker(worker_settings(tmp_path, url), "cpu", once=True) == 1

    job = job_row(factory, job_id)
    assert job.state == "failed"
    assert job.error.startswith("ValueError: invalid options for problem 'concave'"), job.error
    assert "Traceback" not in job.error and 'File "' not in job.error
    assert not re.search(r"(^|[\s'\"(=])/[\w.-]+/", job.error), job.error
    assert _HOST not in job.error and str(tmp_path) not in job.error
    # The operator still gets the whole traceback in the worker's log.
    assert "Traceback" in caplog.text and "/srv/secret/data" in caplog.text


_HOST = socket.gethostname()
