"""``pmtl worker --executor ray`` against a real Ray cluster that this module starts itself.

The cluster (``ray start --head`` on 127.0.0.1, 2 CPUs, a small object store, no dashboard, in
its own session and temp dir) is shared by the cases and stopped by its process group at the
end; whatever of it survives (Ray's own daemons, idle workers) is found by its session id or
temp dir and killed, and the fixture checks that nothing of it is left. ``ray stop`` is never
used: it would end every Ray process on the machine.

Cases: several runs finish; SIGKILL of the Ray worker process running a job (the job resumes
and finishes with contiguous epochs); cancel; dispatcher SIGKILL and restart. The problem is
the synthetic ``concave`` one (epochs of a few steps, a checkpoint per epoch).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from backend.app import queue
from backend.app.db.session import session_scope
from backend.app.storage import ArtifactStore
from tests.backend._queue_helpers import database, job_row, make_run, metric_rows, session_factory
from tests.backend._worker_helpers import (
    SupervisorProcess,
    assert_checkpoints_valid,
    checkpoint_rows,
    wait_for,
    worker_settings,
)
from tests.conftest import require

pytestmark = pytest.mark.slow  # the cluster takes ~20-30 s to start on 2 busy cores

SLOW_JOB = {"steps_per_epoch": 8}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """A one-node Ray cluster in its own session (``sid``) and temp dir."""

    def __init__(self) -> None:
        # Short: Ray's unix sockets live under it and socket paths are limited to ~107 bytes.
        self.temp_dir = tempfile.mkdtemp(prefix="pmtlray", dir="/tmp")
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        ray_cli = Path(sys.executable).with_name("ray")
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        for name in ("PMTL_DATABASE_URL", "PGPASSWORD"):  # the tasks never see the database
            env.pop(name, None)
        self.log = open(Path(self.temp_dir) / "ray-start.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(ray_cli),
                "start",
                "--head",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--temp-dir",
                self.temp_dir,
                "--num-cpus",
                "2",
                "--num-gpus",
                "0",
                "--object-store-memory",
                str(80 * 1024 * 1024),
                "--include-dashboard",
                "false",
                "--disable-usage-stats",
                "--block",
            ],
            start_new_session=True,  # its own session and process group, stopped by its id
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.sid = self.proc.pid

    def ours(self, proc: psutil.Process) -> bool:
        """Whether ``proc`` belongs to this cluster (its session, or its temp dir)."""
        try:
            if os.getsid(proc.pid) == self.sid:
                return True
            return any(self.temp_dir in part for part in proc.cmdline())
        except (psutil.Error, ProcessLookupError, PermissionError):
            return False

    def processes(self) -> list[psutil.Process]:
        """Live processes of this cluster."""
        out = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if proc.status() != psutil.STATUS_ZOMBIE and self.ours(proc):
                    out.append(proc)
        return out

    def task_process(self, job_id: int) -> psutil.Process | None:
        """The Ray worker process executing the task ``pmtl-job-<job_id>`` (Ray sets its title)."""
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                title = " ".join(proc.cmdline()).split()
                if title and title[0] == f"ray::pmtl-job-{job_id}":
                    return proc
        return None

    def wait_ready(self, timeout: float = 120) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"ray start exited: {(Path(self.temp_dir) / 'ray-start.log').read_text()}"
                )
            names = {p.name() for p in self.processes()}
            if "raylet" not in names:
                return False
            with socket.socket() as sock:
                sock.settimeout(1)
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(up, timeout, "the Ray cluster", every=0.5)

    def stop(self) -> list[str]:
        """Stop the cluster by its process group, then kill what survived; what survived."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(15)
        survivors = self.processes()
        names = [f"{p.pid}:{p.name()}" for p in survivors]
        for proc in survivors:  # Ray's daemons and workers in other groups of the session
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(survivors, timeout=15)
        self.log.close()
        return names


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    require(importlib.util.find_spec("ray") is not None, "ray is not installed (the dev extra)")
    started = Cluster()
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()
        left = started.processes()
        shutil.rmtree(started.temp_dir, ignore_errors=True)
        assert not left, f"Ray processes survived the cluster's stop: {left}"


class Dispatcher(SupervisorProcess):
    """``python -m backend.app.worker --executor ray`` configured through PMTL_* variables, in
    its own session (a test's crash leaves no dispatcher in ours)."""

    def __init__(self, settings: Any, cluster: Cluster, log_path: Path) -> None:
        super().__init__(
            settings,
            log_path,
            args=("--executor", "ray", "--ray-address", cluster.address),
            extra_env={"RAY_USAGE_STATS_ENABLED": "0"},
            new_session=True,
            append_log=True,  # a second dispatcher of a test goes on in the same log
        )

    def stop(self, timeout: float = 60) -> None:
        """As :meth:`SupervisorProcess.stop`, with longer for Ray tasks to wind down."""
        super().stop(timeout)


@contextlib.contextmanager
def dispatcher(settings: Any, cluster: Cluster, log_path: Path) -> Iterator[Dispatcher]:
    started = Dispatcher(settings, cluster, log_path)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def db(tmp_path):
    with database("sqlite", tmp_path) as url, session_factory(url) as factory:
        yield url, factory


def _state(factory, job_id: int) -> str:
    return job_row(factory, job_id).state


def _assert_contiguous(factory, run_id: int, epochs: int) -> None:
    """Every (preference, split) has each epoch 1..epochs exactly once."""
    rows = metric_rows(factory, run_id)
    assert rows
    per_key = Counter((r.preference_id, r.split, r.epoch) for r in rows)
    assert set(per_key.values()) == {1}, "duplicate metric points"
    keys = {(r.preference_id, r.split) for r in rows}
    for key in keys:
        seen = sorted(e for (p, s, e) in per_key if (p, s) == key)
        assert seen == list(range(1, epochs + 1)), f"{key}: epochs {seen}"


def test_several_runs_finish_as_ray_tasks(cluster, db, tmp_path):
    url, factory = db
    settings = worker_settings(tmp_path, url)
    runs = [
        make_run(factory, prefs_per_job=1, epochs=3, training={"epochs": 3, "steps_per_epoch": 4})
        for _ in range(3)
    ]
    with dispatcher(settings, cluster, tmp_path / "dispatcher.log") as running:
        for _, (job_id,) in runs:
            done = lambda j=job_id: _state(factory, j) == "finished"  # noqa: E731
            wait_for(done, 240, f"job {job_id}", every=0.5)
        log = running.log()
    assert "room for 2 job(s)" in log, log
    # SIGTERM is graceful although Ray installs its own handler in the driver.
    assert running.proc.returncode == 0, running.log_path.read_text()
    assert "signal 15: stopping" in running.log_path.read_text()
    store = ArtifactStore(settings.artifact_root)
    for run_id, (job_id,) in runs:
        job = job_row(factory, job_id)
        assert (job.attempts, job.epoch, job.error) == (1, 3, None)
        assert job.device == "ray:cpu" and "/ray#" in job.worker
        _assert_contiguous(factory, run_id, 3)
        assert_checkpoints_valid(store, checkpoint_rows(factory, job_id))
    assert cluster.task_process(runs[0][1][0]) is None


def test_a_killed_ray_worker_resumes_its_job_from_the_last_checkpoint(cluster, db, tmp_path):
    url, factory = db
    epochs = 16
    settings = worker_settings(tmp_path, url)
    run_id, (job_id,) = make_run(
        factory, prefs_per_job=1, epochs=epochs, training={"epochs": epochs, **SLOW_JOB}
    )
    with dispatcher(settings, cluster, tmp_path / "dispatcher.log") as running:
        wait_for(lambda: job_row(factory, job_id).epoch >= 3, 180, "epoch 3", every=0.2)
        victim = wait_for(lambda: cluster.task_process(job_id), 30, "the task's process")
        victim.kill()  # the Ray worker process dies as on a lost node
        at_kill = job_row(factory, job_id).epoch
        assert at_kill < epochs, "the job finished before the kill; make it longer"
        wait_for(lambda: _state(factory, job_id) == "finished", 240, "the job", every=0.5)
        log = running.log()
    job = job_row(factory, job_id)
    assert (job.attempts, job.epoch, job.error) == (2, epochs, None)
    assert "Ray task ended with" in log and "resuming after epoch" in log, log
    _assert_contiguous(factory, run_id, epochs)
    assert_checkpoints_valid(
        ArtifactStore(settings.artifact_root), checkpoint_rows(factory, job_id)
    )


def test_cancel_stops_the_task_after_a_checkpoint(cluster, db, tmp_path):
    url, factory = db
    epochs = 200
    settings = worker_settings(tmp_path, url)
    run_id, (job_id,) = make_run(
        factory, prefs_per_job=1, epochs=epochs, training={"epochs": epochs, **SLOW_JOB}
    )
    with dispatcher(settings, cluster, tmp_path / "dispatcher.log") as running:
        wait_for(lambda: checkpoint_rows(factory, job_id), 180, "a checkpoint", every=0.2)
        assert cluster.task_process(job_id) is not None
        with session_scope(factory) as session:
            assert queue.request_cancel(session, run_id)
        wait_for(lambda: _state(factory, job_id) == "cancelled", 60, "the cancel", every=0.2)
        wait_for(lambda: cluster.task_process(job_id) is None, 30, "the task to end")
        log = running.log()
    assert "stopping the training (cancel)" in log, log
    job = job_row(factory, job_id)
    assert job.epoch < epochs and job.attempts == 1
    rows = checkpoint_rows(factory, job_id)
    assert_checkpoints_valid(ArtifactStore(settings.artifact_root), rows)
    assert rows[-1].epoch == job.epoch  # the last epoch stored has its checkpoint


def test_a_killed_dispatcher_neither_loses_nor_double_runs_its_job(cluster, db, tmp_path):
    url, factory = db
    epochs = 16
    settings = worker_settings(tmp_path, url)
    run_id, (job_id,) = make_run(
        factory, prefs_per_job=1, epochs=epochs, training={"epochs": epochs, **SLOW_JOB}
    )
    log_path = tmp_path / "dispatcher.log"
    first = Dispatcher(settings, cluster, log_path)
    try:
        wait_for(lambda: job_row(factory, job_id).epoch >= 3, 180, "epoch 3", every=0.2)
        wait_for(lambda: cluster.task_process(job_id), 30, "the task's process")
    finally:
        first.kill()
    assert job_row(factory, job_id).epoch < epochs, "the job finished before the kill"
    # The driver is gone: Ray (and the task's own lifeline) end its task, so nothing of the
    # first attempt can run next to the second.
    wait_for(lambda: cluster.task_process(job_id) is None, 60, "the orphaned task to end")
    assert _state(factory, job_id) == "running"  # its lease has not expired yet
    with dispatcher(settings, cluster, log_path) as second:
        wait_for(lambda: _state(factory, job_id) == "finished", 240, "the job", every=0.5)
        log = second.log()
    job = job_row(factory, job_id)
    assert (job.attempts, job.epoch, job.error) == (2, epochs, None)
    assert "reaped 1 job(s)" in log and "resuming after epoch" in log, log
    _assert_contiguous(factory, run_id, epochs)
    assert_checkpoints_valid(
        ArtifactStore(settings.artifact_root), checkpoint_rows(factory, job_id)
    )
