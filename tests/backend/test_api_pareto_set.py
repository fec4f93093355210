"""A psl run's learned front over REST: evaluate any preference, download its network."""

from __future__ import annotations

import time

import pytest
import torch

from pmtl_core.export import load_model
from pmtl_core.problems.registry import get_problem
from tests.backend._api import Api
from tests.backend.test_api_models import _train_job


def test_evaluate_and_download_any_preference_of_a_function_run(api: Api):
    run = api.create_run(method="psl", preferences={"count": 3}, training={"epochs": 2})
    rid = run["id"]
    body = {"vectors": [[0.2, 0.8], [0.6, 0.4]]}
    early = api.post(f"/runs/{rid}/evaluate", json=body)
    assert early.status_code == 404 and "no checkpoint yet" in early.json()["detail"]
    _train_job(api, run, api.claim())

    angles = torch.linspace(0.05, 1.5, 20)
    vectors = torch.stack([angles.cos(), angles.sin()], -1).tolist()
    started = time.perf_counter()
    response = api.post(f"/runs/{rid}/evaluate", json={"vectors": vectors, "split": "train"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    assert elapsed < 2.0, f"20 vectors took {elapsed:.2f} s"
    payload = response.json()
    assert payload["epoch"] == 2 and response.headers["x-pmtl-epoch"] == "2"
    assert payload["samples"] is None and payload["split_size"] is None  # no examples here
    points = payload["points"]
    got = torch.tensor([p["vector"] for p in points])
    torch.testing.assert_close(got, torch.tensor(vectors), atol=1e-6, rtol=0)

    model = api.get(f"/runs/{rid}/model", params={"preference": f"{vectors[3][0]},{vectors[3][1]}"})
    assert model.status_code == 200, model.text
    assert model.headers["x-pmtl-epoch"] == "2"
    assert 'filename="model.safetensors"' in model.headers["content-disposition"]
    config = api.get(
        f"/runs/{rid}/config", params={"preference": f"{vectors[3][0]},{vectors[3][1]}"}
    )
    assert config.status_code == 200 and config.json()["method"] == "psl"
    x = load_model(config.json(), model.content)().detach()
    problem = get_problem("concave")
    assert problem.evaluate(x[None])[0].tolist() == pytest.approx(points[3]["losses"], abs=1e-5)
    # a preference the run trained on gives the model its solution download holds
    pinned = api.get(f"/runs/{rid}/model", params={"preference": "0.2,0.8", "epoch": 1})
    assert pinned.status_code == 200 and pinned.headers["x-pmtl-epoch"] == "1"
    assert pinned.content != api.get(f"/runs/{rid}/model", params={"preference": "0.2,0.8"}).content


def test_bad_preferences_and_splits_are_422_naming_them(api: Api):
    run = api.create_run(method="psl", preferences={"count": 2}, training={"epochs": 1})
    rid = run["id"]
    _train_job(api, run, api.claim(), epochs=1)
    bad = api.post(f"/runs/{rid}/evaluate", json={"vectors": [[0.5, 0.5], [-1, 2], [0, 0]]})
    assert bad.status_code == 422
    detail = bad.json()["detail"]
    assert "preference vector 2" in detail and "preference vector 3" in detail
    wrong = api.post(f"/runs/{rid}/evaluate", json={"vectors": [[0.5, 0.5, 0.5]]})
    assert wrong.status_code == 422 and "3" in wrong.json()["detail"]
    test = api.post(f"/runs/{rid}/evaluate", json={"vectors": [[1, 1]], "split": "test"})
    assert test.status_code == 422 and "only the train split" in test.json()["detail"]
    for text in ("-1,2", "0,0", "a,b", "1,2,3", "nan,1"):
        response = api.get(f"/runs/{rid}/model", params={"preference": text})
        assert response.status_code == 422, (text, response.text)
    assert (
        api.get(f"/runs/{rid}/model", params={"preference": "1,1"}, user="bob").status_code == 404
    )
    assert (
        api.post(f"/runs/{rid}/evaluate", json={"vectors": [[1, 1]]}, user="bob").status_code == 404
    )
    gone = api.get(f"/runs/{rid}/config", params={"preference": "1,1", "epoch": 7})
    assert gone.status_code == 404 and "epoch 7" in gone.json()["detail"]


def test_a_run_of_one_model_per_preference_is_409(api: Api):
    run = api.create_run(method="linear", preferences={"count": 2}, training={"epochs": 1})
    _train_job(api, run, api.claim(), epochs=1)
    response = api.post(f"/runs/{run['id']}/evaluate", json={"vectors": [[1, 1]]})
    assert response.status_code == 409 and "only runs of a method" in response.json()["detail"]
    model = api.get(f"/runs/{run['id']}/model", params={"preference": "1,1"})
    assert model.status_code == 409


def test_a_data_set_run_evaluates_on_the_test_split_and_downloads_a_plain_network(api: Api):
    run = api.create_run(
        problem="penguins", method="psl", preferences={"count": 3}, training={"epochs": 2}
    )
    rid = run["id"]
    _train_job(api, run, api.claim())
    response = api.post(
        f"/runs/{rid}/evaluate", json={"vectors": [[0.9, 0.1], [0.1, 0.9]], "split": "test"}
    )
    assert response.status_code == 200, response.text
    points = response.json()["points"]
    assert set(points[0]["metrics"]) == {"accuracy"}
    assert all(0 <= a <= 1 for p in points for a in p["metrics"]["accuracy"])
    model = api.get(f"/runs/{rid}/model", params={"preference": "0.9,0.1"})
    config = api.get(f"/runs/{rid}/config", params={"preference": "0.9,0.1"}).json()
    net = load_model(config, model.content)
    problem = get_problem("penguins")
    data = problem.load("cpu").test
    _, outs = net(problem.transform(data.inputs))
    losses = problem.task_losses(outs, data.targets)
    assert losses.tolist() == pytest.approx(points[0]["losses"], abs=1e-5)
    answer = response.json()
    size = data.inputs.shape[0]
    assert (answer["samples"], answer["split_size"]) == (size, size)
    sampled = api.post(
        f"/runs/{rid}/evaluate", json={"vectors": [[0.9, 0.1]], "split": "test", "samples": 20}
    )
    assert sampled.status_code == 200, sampled.text
    assert (sampled.json()["samples"], sampled.json()["split_size"]) == (20, size)
    zero = api.post(f"/runs/{rid}/evaluate", json={"vectors": [[0.9, 0.1]], "samples": 0})
    assert zero.status_code == 422
