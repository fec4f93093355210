"""A real Pareto MTL Lab on free ports for UI tests: API (uvicorn) and a CPU worker.

The database is a SQLite file under a temporary home, migrated with the service's helper;
a user is created with a token. The API and the worker run as subprocesses (as in
production), so the UI under test reaches them over HTTP only. ``System.start_ui`` adds the
Streamlit UI through ``pmtl ui`` for browser tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
PMTL = [sys.executable, "-m", "pmtl_core.cli"]

#: A quick run of the synthetic concave problem: seconds of CPU per epoch at most.
CONCAVE_TRAINING = {"epochs": 4, "steps_per_epoch": 10}

__all__ = ["CONCAVE_TRAINING", "System", "free_port", "wait_for"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    """Call ``check()`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # the system may still be starting
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout:g} s waiting for {what} (last error: {last_error})"
    )


@dataclass
class System:
    """Processes of one lab and how to reach them."""

    home: Path
    env: dict[str, str]
    api_url: str
    token: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)

    @classmethod
    @contextlib.contextmanager
    def start(cls, home: Path, devices: str | None = "cpu") -> Iterator[System]:
        """Migrate, create a user, start the API and a worker on ``devices`` (``None``: no
        worker); stop them on exit."""
        from backend.app.core.config import Settings
        from backend.app.core.security import create_user
        from backend.app.db.migrate import upgrade
        from backend.app.db.session import create_db_engine, make_session_factory, session_scope

        home.mkdir(parents=True, exist_ok=True)
        db_url = f"sqlite:///{home / 'pmtl.db'}"
        upgrade(db_url)
        settings = Settings(_env_file=None, database_url=db_url, home=home)
        engine = create_db_engine(settings.database_url)
        try:
            with session_scope(make_session_factory(engine)) as db:
                _, token = create_user(db, "ui-tester", False)
        finally:
            engine.dispose()
        port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PMTL_") or k in ("PMTL_DATA_DIR",)
        }
        env.update(
            PMTL_HOME=str(home),
            PMTL_DATABASE_URL=db_url,
            PMTL_API_URL=f"http://127.0.0.1:{port}",
            PMTL_WORKER_POLL_SECONDS="0.5",
            PMTL_LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        system = cls(home=home, env=env, api_url=f"http://127.0.0.1:{port}", token=token)
        try:
            system._spawn(
                "api",
                [*PMTL, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            )
            wait_for(system._healthy, 180, "the API to answer /healthz")
            if devices:
                system._spawn("worker", [*PMTL, "worker", "--devices", devices])
            yield system
        finally:
            system.stop()

    def _spawn(
        self, name: str, argv: list[str], extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        log = self.home / f"{name}.log"
        handle = log.open("ab")
        env = {**self.env, **(extra_env or {})}
        proc = subprocess.Popen(
            argv, cwd=self.home, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
        handle.close()
        self.processes.append(proc)
        self.logs.append(log)
        return proc

    def _healthy(self) -> bool:
        for proc in self.processes:
            if proc.poll() is not None:
                raise RuntimeError(f"a process exited early; see {self.log_tail()}")
        return httpx.get(f"{self.api_url}/healthz", timeout=2).status_code == 200

    def start_ui(self, port: int) -> str:
        """Start the Streamlit UI with ``pmtl ui`` against this API; return its URL."""
        argv = [*PMTL, "ui", "--host", "127.0.0.1", "--port", str(port), "--api-url", self.api_url]
        self._spawn("ui", argv, {"PMTL_TOKEN": self.token, "PMTL_POLL_SECONDS": "1"})
        url = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200,
            90,
            "the UI to answer /_stcore/health",
        )
        return url

    def headers(self) -> dict[str, str]:
        """Authorization header of the test user."""
        return {"Authorization": f"Bearer {self.token}"}

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request to ``/api/v1{path}`` as the test user."""
        return httpx.request(
            method, f"{self.api_url}/api/v1{path}", headers=self.headers(), timeout=30, **kwargs
        )

    def create_run(self, **body: Any) -> dict[str, Any]:
        """Submit a run directly through the API (for tests that need one ready-made)."""
        payload = {
            "name": "fixture run",
            "problem": "concave",
            "method": "pareto_mtl",
            "preferences": {"count": 3},
            "training": dict(CONCAVE_TRAINING),
        }
        payload.update(body)
        response = self.api("POST", "/runs", json=payload)
        assert response.status_code == 201, response.text
        return response.json()

    def wait_finished(self, run_id: int, timeout: float = 120) -> dict[str, Any]:
        """Wait until a run is in a terminal state; return its detail."""

        def done() -> dict[str, Any] | None:
            run = self.api("GET", f"/runs/{run_id}").json()
            return run if run["status"] in ("finished", "failed", "cancelled") else None

        run = wait_for(done, timeout, f"run {run_id} to finish ({self.log_tail()})", 0.5)
        assert run["status"] == "finished", f"run {run_id} ended {run['status']}: {run['jobs']}"
        return run

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of every process log (for failure messages)."""
        out = []
        for log in self.logs:
            if log.exists():
                text = log.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self) -> None:
        """Terminate every process this system started (its own ids only)."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.processes.clear()
