"""Model download: a real (short) training run's checkpoint exported as safetensors + config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors

from backend.app import queue
from backend.app.db.models import Artifact
from backend.app.db.session import session_scope
from pmtl_core import checkpoints
from pmtl_core.engine import train
from pmtl_core.export import load_model
from pmtl_core.problems.registry import get_problem
from tests.backend._api import Api


def _train_job(api: Api, run: dict, claim: queue.Claim, epochs: int = 2) -> list[Path]:
    """What a worker does for a claimed job: train, then record the checkpoints."""
    directory = api.app.state.store.checkpoint_dir(claim.run_id, claim.job_id)
    vectors = [p["vector"] for p in run["preferences"] if p["job_id"] == claim.job_id]
    train(
        get_problem(run["problem"]),
        run["method"],
        torch.tensor(vectors),
        {"epochs": epochs, "steps_per_epoch": 3, "device": "cpu", "keep_checkpoints": 5},
        checkpoint_dir=directory,
        meta={"problem_options": run["problem_options"]},
    )
    paths = checkpoints.list_checkpoints(directory)
    store = api.app.state.store
    for epoch, path in enumerate(paths, start=1):
        assert queue.record_artifact(
            api.factory,
            claim.job_id,
            claim.lease_token,
            kind="checkpoint",
            epoch=epoch,
            path=store.relative(path),
            sha256=checkpoints.sha256(path),
            size=path.stat().st_size,
        )
    return paths


def test_download_the_newest_checkpointed_model_and_its_config(api: Api):
    run = api.create_run(preferences={"count": 3}, training={"epochs": 2})
    rid = run["id"]
    first, middle, _ = run["preferences"]
    base = f"/runs/{rid}/solutions/{middle['id']}"
    early = api.get(f"{base}/model")
    assert early.status_code == 404
    assert "no checkpoint of this model yet (its job is queued)" in early.json()["detail"]
    claim = api.claim()
    paths = _train_job(api, run, claim)
    assert len(paths) == 2

    response = api.get(f"{base}/model")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert (
        f"run{rid}-pref{middle['id']}-epoch2.safetensors" in response.headers["content-disposition"]
    )
    assert response.headers["x-pmtl-epoch"] == "2"
    tensors = load_safetensors(response.content)
    assert set(tensors) == {"x"} and tensors["x"].shape == (20,)

    config = api.get(f"{base}/config").json()
    assert config["problem"] == "concave" and config["index"] == 1
    assert config["preference"] == pytest.approx(middle["vector"], abs=1e-6)
    model = load_model(config, response.content)
    assert torch.equal(model().detach(), tensors["x"])

    # The export is cached as artifacts and served again without re-exporting.
    with session_scope(api.factory) as session:
        kinds = sorted(
            a.kind for a in session.query(Artifact).filter_by(preference_id=middle["id"])
        )
    assert kinds == ["model", "model_config"]
    again = api.get(f"{base}/model")
    assert again.content == response.content
    other = api.get(f"/runs/{rid}/solutions/{first['id']}/model")
    assert load_safetensors(other.content)["x"].shape == (20,)
    assert not torch.equal(load_safetensors(other.content)["x"], tensors["x"])


def test_a_corrupt_newest_checkpoint_falls_back_to_an_older_valid_one(api: Api):
    run = api.create_run(preferences={"count": 2}, training={"epochs": 2})
    claim = api.claim()
    paths = _train_job(api, run, claim)
    paths[-1].write_bytes(b"garbage")
    pref = run["preferences"][0]["id"]
    response = api.get(f"/runs/{run['id']}/solutions/{pref}/model")
    assert response.status_code == 200
    assert response.headers["x-pmtl-epoch"] == "1"
    paths[0].write_bytes(b"garbage too")
    other = api.get(f"/runs/{run['id']}/solutions/{run['preferences'][1]['id']}/model")
    assert other.status_code == 404
    assert "failed its SHA-256 check" in other.json()["detail"]


def test_model_routes_are_404_for_unknown_or_foreign_ids(api: Api):
    run = api.create_run()
    pref = run["preferences"][0]["id"]
    missing = api.get(f"/runs/{run['id']}/solutions/999999/model")
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"preference 999999 not found in run {run['id']}"
    assert api.get(f"/runs/{run['id']}/solutions/{pref}/config", user="bob").status_code == 404
    assert api.get(f"/runs/999/solutions/{pref}/model").status_code == 404
    exported = json.dumps(api.get(f"/runs/{run['id']}/solutions/{pref}/config").json())
    assert "no checkpoint" in exported


def _record_checkpoint(api: Api, claim: queue.Claim, path: Path, epoch: int) -> None:
    store = api.app.state.store
    assert queue.record_artifact(
        api.factory,
        claim.job_id,
        claim.lease_token,
        kind="checkpoint",
        epoch=epoch,
        path=store.relative(path),
        sha256=checkpoints.sha256(path),
        size=path.stat().st_size,
    )


def _trained_checkpoints(api: Api, run: dict, claim: queue.Claim) -> list[Path]:
    """Train the claimed job for two epochs; record nothing yet."""
    directory = api.app.state.store.checkpoint_dir(claim.run_id, claim.job_id)
    vectors = [p["vector"] for p in run["preferences"] if p["job_id"] == claim.job_id]
    train(
        get_problem(run["problem"]),
        run["method"],
        torch.tensor(vectors),
        {"epochs": 2, "steps_per_epoch": 3, "device": "cpu", "keep_checkpoints": 5},
        checkpoint_dir=directory,
        meta={"problem_options": run["problem_options"]},
    )
    return checkpoints.list_checkpoints(directory)


def test_the_config_can_be_pinned_to_the_checkpoint_of_the_downloaded_weights(api: Api):
    run = api.create_run(preferences={"count": 2}, training={"epochs": 2})
    rid, pref = run["id"], run["preferences"][1]["id"]
    claim = api.claim()
    first, second = _trained_checkpoints(api, run, claim)
    _record_checkpoint(api, claim, first, 1)
    base = f"/runs/{rid}/solutions/{pref}"

    weights = api.get(f"{base}/model")
    assert weights.status_code == 200
    assert weights.headers["x-pmtl-epoch"] == "1"
    # Training goes on: a newer checkpoint lands between the two requests.
    _record_checkpoint(api, claim, second, 2)

    pinned = api.get(f"{base}/config", params={"epoch": weights.headers["x-pmtl-epoch"]})
    assert pinned.status_code == 200, pinned.text
    config = pinned.json()
    assert config["epoch"] == 1
    assert pinned.headers["x-pmtl-epoch"] == "1"
    assert f'"{pinned.headers["x-pmtl-weights-sha256"]}"' == weights.headers["etag"]
    expected = load_safetensors(weights.content)["x"]
    assert torch.equal(load_model(config, weights.content)().detach(), expected)
    # The weights of epoch 1 are what the epoch-1 checkpoint holds for this model.
    state = checkpoints.load(first)
    assert torch.equal(state["trainer"]["x"][1], expected)

    # Unpinned, both routes move on to the newest checkpoint (the documented contract) …
    assert api.get(f"{base}/config").json()["epoch"] == 2
    newest = api.get(f"{base}/model")
    assert newest.headers["x-pmtl-epoch"] == "2" and newest.content != weights.content
    # … and the weights can be pinned too.
    again = api.get(f"{base}/model", params={"epoch": 1})
    assert again.status_code == 200 and again.content == weights.content
    assert again.headers["etag"] == weights.headers["etag"]
    # An epoch this model has no checkpoint of is a 404 that says so.
    missing = api.get(f"{base}/config", params={"epoch": 7})
    assert missing.status_code == 404
    assert "epoch 7" in missing.json()["detail"]
    assert api.get(f"{base}/config", params={"epoch": -1}).status_code == 422
