"""``pmtl login|submit|status|watch|download`` against a real API and worker."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pmtl_core import load_model
from tests.frontend._system import System


def _pmtl(lab: System, *args: str, env: dict | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "pmtl_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**lab.env, **(env or {})},
    )


@pytest.fixture
def config_home(tmp_path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "config")}


def test_submit_watch_status_download_round_trip(lab, config_home, tmp_path):
    login = _pmtl(lab, "login", "--api-url", lab.api_url, "--token", lab.token, env=config_home)
    assert login.returncode == 0, login.stderr
    saved = tmp_path / "config" / "pmtl" / "client.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    # from now on URL and token come from the login file only
    env = {**config_home, "PMTL_TOKEN": "", "PMTL_API_URL": ""}
    submitted = _pmtl(
        lab,
        "submit",
        "--problem",
        "concave",
        "--method",
        "linear",
        "--prefs",
        "3",
        "--training",
        '{"epochs": 3, "steps_per_epoch": 5}',
        "--name",
        "from the cli",
        "--watch",
        env=env,
    )
    assert submitted.returncode == 0, submitted.stderr
    run_id = int(submitted.stdout.strip().splitlines()[0])
    assert f"run {run_id} finished" in submitted.stderr
    listed = _pmtl(lab, "status", env=env)
    assert listed.returncode == 0 and "from the cli" in listed.stdout
    detail = _pmtl(lab, "status", str(run_id), env=env)
    assert detail.returncode == 0 and "finished" in detail.stdout
    pref_id = lab.api("GET", f"/runs/{run_id}").json()["preferences"][0]["id"]
    fetched = _pmtl(
        lab, "download", str(run_id), str(pref_id), "--out", str(tmp_path / "m"), env=env
    )
    assert fetched.returncode == 0, fetched.stderr
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    model = load_model(config, tmp_path / "m" / "model.safetensors")
    assert model().shape == (20,) and config["epoch"] == 3


def test_client_errors_are_readable(lab, config_home):
    no_token = _pmtl(lab, "status", env={**config_home, "PMTL_TOKEN": ""})
    assert no_token.returncode == 1 and "no API token" in no_token.stderr
    bad = _pmtl(lab, "submit", "--method", "nope", "--token", lab.token, env=config_home)
    assert bad.returncode == 1 and "nope" in bad.stderr and "Traceback" not in bad.stderr
    wrong = _pmtl(lab, "status", "--token", "pmtl_wrong", env=config_home)
    assert wrong.returncode == 1 and "not signed in" in wrong.stderr
