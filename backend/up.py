"""``pmtl up``: the whole embedded system on one machine under one supervisor process.

SQLite under ``--home`` (default ``./pmtl-data``), the API on 127.0.0.1:8000, one worker on
the best local device and the UI on 127.0.0.1:8501. The supervisor migrates the database,
makes sure an admin token exists (kept in ``<home>/admin.token``, readable by the owner only,
so a second ``pmtl up`` prints it again), starts the three services as child processes with
their logs in ``<home>/logs/``, waits for the API, queues a small demo run when the database
has no runs yet, prints the URLs and the token, restarts a service that dies, and on Ctrl-C
(SIGINT) or SIGTERM stops everything: SIGTERM to each service's process group, SIGKILL after a
grace period, then a sweep of any descendant still alive, so no process is left behind. The
children also get SIGTERM from the kernel if the supervisor itself is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import psutil
import typer
from rich.console import Console

__all__ = ["DEMO_RUN", "register", "up"]

console = Console(stderr=True)

#: The first-run demo: Pareto MTL on the concave problem, a front that forms in seconds.
DEMO_RUN = {
    "name": "demo: Pareto MTL on the concave problem",
    "problem": "concave",
    "method": "pareto_mtl",
    "preferences": {"count": 8},
    "training": {"epochs": 30, "steps_per_epoch": 10},
    "seed": 0,
}
_TOKEN_FILE = "admin.token"
_GRACE_SECONDS = 10.0


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM this child if the supervisor dies (no orphans even on SIGKILL)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class Service:
    """One supervised child process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: we signal the whole tree
                preexec_fn=_set_pdeathsig if sys.platform.startswith("linux") else None,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM the service's process group; SIGKILL it after the grace period."""
        if self.process is None:
            return
        tree = _descendants(self.process.pid)
        _signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=_GRACE_SECONDS)
        _kill_leftovers(tree)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _kill_leftovers(processes: list[psutil.Process]) -> None:
    """Wait briefly for processes to go, then SIGKILL any that did not."""
    _, alive = psutil.wait_procs(processes, timeout=_GRACE_SECONDS / 2)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=_GRACE_SECONDS / 2)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _pmtl(*args: str) -> list[str]:
    return [sys.executable, "-m", "pmtl_core.cli", *args]


def admin_token(settings) -> str:
    """The embedded admin's token: read from ``<home>/admin.token`` when it still opens the
    database, else a new admin user is created and its token stored there (mode 0600)."""
    from backend.app.core.security import authenticate, create_user
    from backend.app.db.session import create_db_engine, make_session_factory, session_scope

    path = Path(settings.home) / _TOKEN_FILE
    engine = create_db_engine(settings.database_url)
    try:
        factory = make_session_factory(engine)
        with session_scope(factory) as session:
            if path.is_file():
                token = path.read_text().strip()
                if token and authenticate(session, token) is not None:
                    return token
            from sqlalchemy import select

            from backend.app.db.models import User

            taken = set(session.scalars(select(User.name)))
            name, n = "admin", 1
            while name in taken:  # a previous admin whose token file was lost
                n += 1
                name = f"admin-{n}"
            _, token = create_user(session, name, True)
    finally:
        engine.dispose()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def wait_for_api(url: str, timeout: float, alive: Callable[[], bool]) -> None:
    """Poll ``/readyz`` until the API is ready; ``RuntimeError`` on timeout or a dead API."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the API process exited during start-up")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API did not become ready within {timeout:.0f} s")


def queue_demo(url: str, token: str) -> bool:
    """Queue the demo run if the database has no runs; returns whether it did."""
    headers = {"Authorization": f"Bearer {token}"}
    runs = httpx.get(f"{url}/api/v1/runs", params={"limit": 1}, headers=headers, timeout=10)
    runs.raise_for_status()
    if runs.json()["count"]:
        return False
    httpx.post(f"{url}/api/v1/runs", json=DEMO_RUN, headers=headers, timeout=30).raise_for_status()
    return True


def up(
    home: Annotated[Path, typer.Option(help="data directory (SQLite, artifacts, logs)")] = Path(
        "pmtl-data"
    ),
    host: Annotated[str, typer.Option(help="interface for the API and the UI")] = "127.0.0.1",
    api_port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    ui_port: Annotated[int, typer.Option(min=1, max=65535)] = 8501,
    devices: Annotated[str, typer.Option(help="worker devices: auto, cpu, cuda:0,…")] = "auto",
    demo: Annotated[bool, typer.Option(help="queue a demo run when there are no runs")] = True,
) -> None:
    """Start the embedded system (API, one worker, UI) until Ctrl-C."""
    from backend.app.core.config import Settings
    from backend.app.db.migrate import upgrade
    from backend.app.redact import mask_url

    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PMTL_HOME=str(home))  # children derive the same settings
    # On a laptop the worker may fetch MNIST / Fashion-MNIST itself (torchvision's download).
    env.setdefault("PMTL_DOWNLOAD_DATA", "true")
    settings = Settings(home=home)
    for port, what in ((api_port, "API"), (ui_port, "UI")):
        if not _port_free(host, port):
            console.print(f"[bold red]error:[/] port {port} for the {what} is in use on {host}")
            raise typer.Exit(1)
    console.print(f"database: {mask_url(settings.database_url)}")  # never the password
    upgrade(settings.database_url)
    token = admin_token(settings)
    api_url = f"http://{host}:{api_port}"
    logs = home / "logs"
    services = [
        Service(
            "api", _pmtl("serve", "--host", host, "--port", str(api_port)), env, logs / "api.log"
        ),
        Service("worker", _pmtl("worker", "--devices", devices), env, logs / "worker.log"),
        Service(
            "ui",
            _pmtl("ui", "--host", host, "--port", str(ui_port)),
            dict(env, PMTL_API_URL=api_url, PMTL_TOKEN=token),
            logs / "ui.log",
        ),
    ]
    stopping = False

    def request_stop(signum, frame) -> None:  # noqa: ARG001
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for service in services:
            service.start()
        wait_for_api(api_url, 90, services[0].alive)
        if demo and queue_demo(api_url, token):
            console.print("queued a demo run (Pareto MTL on the concave problem)")
        console.print(
            f"\n[bold green]Pareto MTL Lab is up[/]\n"
            f"  UI     http://{host}:{ui_port}\n"
            f"  API    {api_url}   (OpenAPI docs at {api_url}/docs)\n"
            f"  token  {token}\n"
            f"  logs   {logs}\n"
            "Press Ctrl-C to stop.\n"
        )
        while not stopping:
            for service in services:
                if not service.alive() and not stopping:
                    _restart(service)
            time.sleep(0.5)
    except RuntimeError as exc:
        console.print(f"[bold red]error:[/] {exc}; see the logs in {logs}")
        raise typer.Exit(1) from exc
    finally:
        console.print("stopping …")
        for service in reversed(services):
            service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        console.print("stopped")


def _restart(service: Service) -> None:
    """Restart a service that died, at most 5 times a minute."""
    now = time.monotonic()
    service.restarts = [t for t in service.restarts if now - t < 60]
    if len(service.restarts) >= 5:
        raise RuntimeError(f"the {service.name} keeps exiting (5 times in a minute)")
    code = service.process.returncode if service.process else None
    console.print(f"[yellow]warning:[/] the {service.name} exited ({code}); restarting it")
    service.restarts.append(now)
    service.start()


def register(app: typer.Typer) -> None:
    """Add ``pmtl up`` to the command line."""
    app.command()(up)
