"""``pmtl up`` as a new user runs it: start, submit over REST, finish, download, Ctrl-C, clean."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from pmtl_core import load_model


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_pmtl_up_serves_trains_downloads_and_stops_cleanly(tmp_path):
    api_port, ui_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PMTL_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pmtl_core.cli",
            "up",
            "--api-port",
            str(api_port),
            "--ui-port",
            str(ui_port),
            "--devices",
            "cpu",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    api = f"http://127.0.0.1:{api_port}"
    seen: set[int] = set()
    try:
        token_file = tmp_path / "pmtl-data" / "admin.token"

        def ready():
            try:
                ok = httpx.get(f"{api}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
            return ok and token_file.is_file()

        _wait(ready, 120, "the API")
        seen |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        _wait(
            lambda: (
                httpx.get(f"http://127.0.0.1:{ui_port}/_stcore/health", timeout=2).status_code
                == 200
                if _ui_up(ui_port)
                else False
            ),
            120,
            "the UI",
        )
        # on an empty database `pmtl up` queues the demo run; wait for it, then a run of our own

        def demo_queued():
            runs = httpx.get(f"{api}/api/v1/runs", headers=headers, timeout=10).json()
            return any(r["name"].startswith("demo") for r in runs["data"])

        _wait(demo_queued, 60, "the demo run")
        created = httpx.post(
            f"{api}/api/v1/runs",
            headers=headers,
            timeout=30,
            json={
                "name": "e2e",
                "problem": "concave",
                "method": "epo",
                "preferences": {"vectors": [[1, 0.5], [0.5, 1]]},
                "training": {"epochs": 5, "steps_per_epoch": 10},
            },
        )
        assert created.status_code == 201, created.text
        run = created.json()

        def finished():
            seen.update(p.pid for p in psutil.Process(proc.pid).children(recursive=True))
            body = httpx.get(f"{api}/api/v1/runs/{run['id']}", headers=headers, timeout=10).json()
            return body if body["status"] in {"finished", "failed"} else None

        detail = _wait(finished, 300, "the run to finish")
        assert detail["status"] == "finished", detail
        pref = detail["preferences"][1]
        base = f"{api}/api/v1/runs/{run['id']}/solutions/{pref['id']}"
        weights = httpx.get(f"{base}/model", headers=headers, timeout=60)
        config = httpx.get(f"{base}/config", headers=headers, timeout=60)
        assert weights.status_code == 200 and config.status_code == 200
        model = load_model(config.json(), weights.content)
        assert model().shape == (20,)
        assert json.loads(config.text)["preference"] == pytest.approx(pref["vector"])
        assert demo_queued()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert "Pareto MTL Lab is up" in out and "stopped" in out
    assert len(seen) >= 3  # API, worker and UI (and the worker's training processes)
    alive = [
        pid
        for pid in seen
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == [], f"processes left behind: {alive}"
    assert (tmp_path / "pmtl-data" / "logs" / "api.log").is_file()


def _ui_up(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
    except httpx.HTTPError:
        return False
    return True


def test_pmtl_up_refuses_a_busy_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pmtl_core.cli",
                "up",
                "--api-port",
                str(port),
                "--ui-port",
                str(_free_port()),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert f"port {port} for the API is in use" in result.stderr
    assert not Path(tmp_path / "pmtl-data" / "logs").exists()
