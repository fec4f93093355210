"""The typed job protocol shared by local training processes and Ray tasks, the lease handle a
claim returns, the claim order's single home, and the credentials a training process gets."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.app import queue
from backend.app.worker.devices import child_environment
from backend.app.worker.protocol import (
    CheckpointEvent,
    EpochEvent,
    ErrorEvent,
    FinishedEvent,
    JobSpec,
    PointOut,
    StartEvent,
    decode_event,
    decode_spec,
    encode,
)
from tests.backend._queue_helpers import database, make_run, session_factory

SPEC = {
    "job_id": 3,
    "run_id": 1,
    "problem": "concave",
    "method": "pareto_mtl",
    "epochs": 2,
    "device": "cpu",
    "lease_seconds": 6.0,
    "preferences": [[1.0, 0.0]],
    "all_preferences": [[1.0, 0.0], [0.0, 1.0]],
    "checkpoint_dir": "/srv/artifacts/runs/1/jobs/3",
    "checkpoints": [{"epoch": 1, "path": "/srv/a/ckpt-epoch0001.pt", "sha256": "ab" * 32}],
    "init_from": [None],
}


def test_every_event_survives_its_line_including_diverged_losses():
    events = [
        StartEvent(resume_epoch=2, discarded=["x.pt"], keep_checkpoints=2),
        EpochEvent(
            epoch=3,
            wall_time=1.5,
            points=[PointOut(index=0, split="train", losses=[math.nan, math.inf, 0.25])],
        ),
        CheckpointEvent(epoch=3, path="/a/b.pt", sha256="0" * 64, size=12),
        ErrorEvent(message="ValueError: bad", traceback="Traceback ..."),
        FinishedEvent(),
    ]
    for event in events:
        line = encode(event)
        assert "\n" not in line
        back = decode_event(line)
        assert type(back) is type(event)
        assert back.model_dump(exclude={"points"}) == event.model_dump(exclude={"points"})
    losses = decode_event(encode(events[1])).points[0].losses
    assert math.isnan(losses[0]) and losses[1:] == [math.inf, 0.25]


@pytest.mark.parametrize(
    "line",
    [
        '{"type": "epoch", "epoch": 1}',  # no points
        '{"type": "telemetry", "epoch": 1}',  # not an event of the protocol
        '{"type": "finished", "surprise": 1}',  # unknown field
        '{"type": "checkpoint", "epoch": "one", "path": "p", "sha256": "s", "size": 1}',
    ],
)
def test_a_malformed_event_is_rejected(line):
    with pytest.raises(ValidationError):
        decode_event(line)


def test_the_spec_round_trips_and_checks_its_fields():
    spec = decode_spec(json.dumps(SPEC))
    assert spec.checkpoints[0].epoch == 1 and spec.init_from == [None]
    assert decode_spec(encode(spec)) == spec
    with pytest.raises(ValidationError):
        JobSpec.model_validate({**SPEC, "epochs": "many"})
    with pytest.raises(ValidationError):
        JobSpec.model_validate({k: v for k, v in SPEC.items() if k != "checkpoint_dir"})


def test_a_training_process_gets_no_database_url_nor_secrets():
    base = {
        "PATH": "/bin",
        "PMTL_DATABASE_URL": "postgresql+psycopg://pmtl:hunter2@db/pmtl",
        "PGPASSWORD": "hunter2",
        "POSTGRES_PASSWORD": "hunter2",
        "PMTL_TOKEN": "pmtl_abc",
        "AWS_SECRET_ACCESS_KEY": "k",
        "PMTL_DATA_DIR": "/data",
        "PMTL_LEASE_SECONDS": "30",
    }
    env, _ = child_environment("cpu", base)
    assert "hunter2" not in json.dumps(env) and "pmtl_abc" not in json.dumps(env)
    assert {k: env[k] for k in ("PATH", "PMTL_DATA_DIR", "PMTL_LEASE_SECONDS")} == {
        "PATH": "/bin",
        "PMTL_DATA_DIR": "/data",
        "PMTL_LEASE_SECONDS": "30",
    }


def test_the_real_child_process_sees_no_credentials(monkeypatch):
    # What an actual process started with that environment can read (not only the dict).
    monkeypatch.setenv("PMTL_DATABASE_URL", "postgresql+psycopg://u:hunter2@db/x")
    monkeypatch.setenv("PGPASSWORD", "hunter2")
    env, _ = child_environment("cpu")
    out = subprocess.run(
        [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    seen = json.loads(out)
    assert "PMTL_DATABASE_URL" not in seen and "PGPASSWORD" not in seen
    assert "hunter2" not in out


def test_a_claim_returns_a_lease_handle_whose_writes_are_fenced(tmp_path):
    with database("sqlite", tmp_path) as url, session_factory(url) as factory:
        _, (job_id,) = make_run(factory, prefs_per_job=1, epochs=2)
        lease = queue.claim(factory, worker="w", device="cpu", lease_seconds=30)
        assert isinstance(lease, queue.Lease) and lease.job_id == job_id
        assert lease.renew(30) is queue.LeaseStatus.HELD
        assert queue.reap_expired(factory) == 0
        # The job goes back to the queue and another worker claims it: the old handle is fenced.
        assert lease.release()
        second = queue.claim(factory, worker="w2", device="cpu", lease_seconds=30)
        assert second is not None and second.lease_token == lease.lease_token + 1
        assert lease.renew(30) is queue.LeaseStatus.LOST
        assert lease.record_metrics([]) is False and lease.finish() is False
        assert second.finish()


def test_the_claim_order_lives_in_one_function(tmp_path, monkeypatch):
    from sqlalchemy import desc

    from backend.app.db.models import Job
    from backend.app.queue import claims

    with database("sqlite", tmp_path) as url, session_factory(url) as factory:
        _, (first, second) = make_run(factory, jobs=2, prefs_per_job=1)
        monkeypatch.setattr(claims, "claim_order", lambda c: c.order_by(desc(Job.id)))
        claimed = queue.claim(factory, worker="w", device="cpu", lease_seconds=30)
        assert claimed is not None and claimed.job_id == second
        monkeypatch.undo()
        assert queue.claim(factory, worker="w", device="cpu", lease_seconds=30).job_id == first


def test_the_compose_ray_profile_keeps_credentials_off_the_ray_nodes():
    import yaml

    root = Path(__file__).resolve().parents[2]
    services = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    ray_nodes = [services["ray-head"], services["ray-gpu-worker"]]
    dispatcher = services["dispatcher"]
    assert all(s["profiles"] == ["ray"] for s in [*ray_nodes, dispatcher])
    for node in ray_nodes:
        assert "env_file" not in node
        assert not any("DATABASE" in k or "PASSWORD" in k for k in node["environment"])
        assert "artifacts:/data/artifacts" in node["volumes"]
        assert node["environment"]["PMTL_ARTIFACT_DIR"] == "/data/artifacts"
    command = " ".join(dispatcher["command"])
    assert "--executor ray --ray-address ray-head:6379" in command
    gpu = services["ray-gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]


@pytest.fixture
def cli(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from backend.cli import register

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PMTL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PMTL_DATABASE_URL", raising=False)
    app = typer.Typer()
    register(app)
    return lambda *args: CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "ray"], "--executor ray needs --ray-address"),
        (["--executor", "slurm"], "--executor must be one of local, ray"),
        (["--ray-address", "127.0.0.1:6379"], "need --executor ray"),
    ],
)
def test_the_worker_command_checks_its_executor_options(cli, args, message):
    result = cli("worker", *args)
    assert result.exit_code != 0
    assert message in result.output
