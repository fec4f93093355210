"""Supervisors for the worker tests: in a thread of the test process or as their own process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.app.core.config import Settings
from backend.app.db.models import Artifact
from backend.app.db.session import session_scope
from backend.app.storage import ArtifactStore, file_sha256
from backend.app.worker import run_worker


@contextmanager
def cpu_load(processes: int | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Keep every core busy while the block runs: ``processes`` (default: one per core) busy
    loops under one shell in their own process group, killed by that group's id at exit."""
    n = processes or os.cpu_count() or 2
    loop = f"{sys.executable} -c 'while True: pass'"
    script = " ".join([f"{loop} &"] * n) + " wait"
    proc = subprocess.Popen(
        ["/bin/sh", "-c", script],
        start_new_session=True,  # a group of its own: killpg below reaches only the burners
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(psutil.Process(proc.pid).children()) >= n, 10, "the CPU burners")
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


#: Tiny training set-ups of the synthetic ``concave`` problem (steps are ~30 ms on 2 CPU cores).
QUICK = {"epochs": 4, "steps_per_epoch": 4}


def worker_settings(home: Path, url: str, **overrides: Any) -> Settings:
    """Settings of a test worker: short leases and polls unless overridden."""
    values: dict[str, Any] = {
        "home": home,
        "database_url": url,
        "lease_seconds": 6.0,
        "heartbeat_seconds": 1.0,
        "worker_poll_seconds": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@contextmanager
def supervisor_thread(settings: Settings, **kwargs: Any) -> Iterator[threading.Event]:
    """``run_worker`` on the CPU in a thread; the yielded event stops it (joined at exit)."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def body() -> None:
        try:
            run_worker(settings, "cpu", stop_event=stop, **kwargs)
        except BaseException as error:  # surfaced at exit
            errors.append(error)

    thread = threading.Thread(target=body, name="test-supervisor", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive(), "the supervisor did not stop"
    assert not errors, errors


class SupervisorProcess:
    """``python -m backend.app.worker --devices cpu`` (or other ``args``) configured through
    PMTL_* variables (and ``extra_env``), its output in ``log_path``."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        args: Sequence[str] = ("--devices", "cpu"),
        extra_env: dict[str, str] | None = None,
        new_session: bool = False,
        append_log: bool = False,
    ) -> None:
        env = dict(os.environ)
        env.update(
            {
                "PMTL_HOME": str(settings.home),
                "PMTL_DATABASE_URL": settings.database_url,
                "PMTL_LEASE_SECONDS": str(settings.lease_seconds),
                "PMTL_HEARTBEAT_SECONDS": str(settings.heartbeat_seconds),
                "PMTL_WORKER_POLL_SECONDS": str(settings.worker_poll_seconds),
                "PMTL_LOG_LEVEL": "INFO",
                **(extra_env or {}),
            }
        )
        self.log_path = log_path
        self._log = log_path.open("a" if append_log else "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend.app.worker", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def training_child(self) -> psutil.Process | None:
        """The supervisor's training process, if one runs."""
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return None
        return next((c for c in children if "backend.app.worker.child" in c.cmdline()), None)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def kill(self) -> None:
        """SIGKILL, as a host crash would."""
        self.proc.kill()
        self.proc.wait(30)
        self._log.close()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (graceful), then SIGKILL; always reaps the process and closes the log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> SupervisorProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def own_training_children() -> list[psutil.Process]:
    """Training processes started by this (test) process's in-thread supervisors."""
    out = []
    for child in psutil.Process().children():
        try:
            if "backend.app.worker.child" in child.cmdline():
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


def checkpoint_rows(factory: sessionmaker[Session], job_id: int) -> list[Artifact]:
    """Checkpoint artifact rows of a job, oldest epoch first (detached)."""
    with session_scope(factory) as session:
        rows = list(
            session.scalars(
                select(Artifact)
                .where(Artifact.job_id == job_id, Artifact.kind == "checkpoint")
                .order_by(Artifact.epoch)
            )
        )
        session.expunge_all()
        return rows


def assert_checkpoints_valid(store: ArtifactStore, rows: list[Artifact]) -> None:
    """Every row names an existing file with the recorded size and SHA-256."""
    assert rows, "no checkpoint recorded"
    for row in rows:
        path = store.resolve(row.path)
        assert path.is_file(), f"{row.path} is missing"
        assert path.stat().st_size == row.size
        assert file_sha256(path) == row.sha256, f"{row.path} does not match its row"
