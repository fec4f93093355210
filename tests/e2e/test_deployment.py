"""The lab deployment files: ``docker compose config`` accepts them and they say what we promise.

No Docker engine runs on CI machines here, so images are not built; the compose file is
validated by the compose tool itself (which needs no engine) and its content is checked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose") is None and shutil.which("apt-get") and _is_root():
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "docker-compose"], capture_output=True, timeout=600
        )
    return ["docker-compose"] if shutil.which("docker-compose") else None


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory) -> dict:
    command = _compose_command()
    require(command is not None, "docker compose (or docker-compose) is needed to validate it")
    work = tmp_path_factory.mktemp("compose")
    shutil.copy(ROOT / "docker-compose.yml", work / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", work / ".env")
    result = subprocess.run(
        [*command, "config"], cwd=work, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.mark.compose
def test_compose_defines_the_lab_services(compose_config):
    services = compose_config["services"]
    # docker-compose v1 lists the services of profiles (e.g. `ray`) too; these are the defaults.
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {"postgres", "migrate", "api", "worker", "ui"}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["migrate"]["command"] == ["pmtl", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
        mounts = [
            v if isinstance(v, str) else f"{v['source']}:{v['target']}"
            for v in services[name]["volumes"]
        ]  # short or long syntax, by tool version
        assert any(m.startswith("artifacts:/data/artifacts") for m in mounts), mounts
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert services["ui"]["environment"]["PMTL_API_URL"] == "http://api:8000"
    assert {"pgdata", "artifacts"} <= set(compose_config["volumes"])


@pytest.mark.compose
def test_env_example_holds_no_real_secrets():
    text = (ROOT / ".env.example").read_text()
    assert re.search(r"^POSTGRES_PASSWORD=change-me$", text, re.M)
    assert re.search(r"^PMTL_TOKEN=$", text, re.M)
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".env" in ignored


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.M)
    assert re.search(r"^USER pmtl$", text, re.M)
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    # the torch pins of the image are the project's
    assert "torch==2.14.1" in text and "torchvision==0.29.1" in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch==2.14.1"' in pyproject and '"torchvision==0.29.1"' in pyproject


@pytest.mark.compose
def test_compose_is_closed_by_default_and_the_ui_gets_no_database_credentials(compose_config):
    services = compose_config["services"]
    for name, port in (("api", 8000), ("ui", 8501)):
        (published,) = services[name]["ports"]
        # short ("127.0.0.1:8000:8000/tcp") or long syntax, by tool version
        host_ip = published.split(":")[0] if isinstance(published, str) else published["host_ip"]
        assert host_ip == "127.0.0.1", (name, published)
        assert str(port) in str(published)
    ui = services["ui"]
    assert not ui.get("env_file")
    leaked = [k for k, v in ui["environment"].items() if "change-me" in str(v)]
    assert not leaked and "PMTL_DATABASE_URL" not in ui["environment"]
    for name in ("api", "worker"):
        assert services[name]["environment"]["PMTL_CACHE_DIR"].startswith("/data/datasets/")
    if "tls" in services:  # docker-compose v1 lists profiled services too
        assert services["tls"]["profiles"] == ["tls"]
        assert (ROOT / "deploy" / "Caddyfile").is_file()
