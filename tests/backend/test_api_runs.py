"""Runs over REST on SQLite and PostgreSQL: submit, list, inspect, cancel, delete, isolation."""

from __future__ import annotations

import math

import pytest

from tests.backend._api import Api, run_payload


def test_create_run_with_a_count_makes_one_job_of_evenly_spread_vectors(api: Api):
    run = api.create_run(preferences={"count": 3}, hyperparameters={}, seed=7)
    assert run["status"] == "queued"
    assert run["owner"] == "alice"
    assert run["problem"] == "concave" and run["method"] == "pareto_mtl"
    assert run["n_preferences"] == 3 and run["n_tasks"] == 2 and run["seed"] == 7
    assert run["training"]["epochs"] == 4
    assert len(run["jobs"]) == 1
    job = run["jobs"][0]
    assert job["state"] == "queued" and job["epochs"] == 4
    assert job["preference_ids"] == [p["id"] for p in run["preferences"]]
    vectors = [p["vector"] for p in run["preferences"]]
    assert [p["index"] for p in run["preferences"]] == [0, 1, 2]
    for v in vectors:
        assert math.isclose(math.hypot(*v), 1.0, rel_tol=1e-6)
    assert vectors[0] == pytest.approx([1.0, 0.0], abs=1e-6)
    assert vectors[2] == pytest.approx([0.0, 1.0], abs=1e-6)
    assert run["progress"] == {
        "jobs_total": 1,
        "jobs_finished": 0,
        "jobs_failed": 0,
        "jobs_running": 0,
        "epoch": 0,
        "epochs": 4,
    }


def test_create_run_with_vectors_normalises_them_and_keeps_hyperparameters(api: Api):
    run = api.create_run(
        preferences={"vectors": [[3.0, 4.0], [1e308, 1e308], [0.0, 2.0]]},
        hyperparameters={},
        method="mgda",
    )
    vectors = [p["vector"] for p in run["preferences"]]
    assert vectors[0] == pytest.approx([0.6, 0.8], rel=1e-6)
    assert vectors[1] == pytest.approx([2**-0.5, 2**-0.5], rel=1e-6)
    assert vectors[2] == pytest.approx([0.0, 1.0])
    assert run["method"] == "mgda"


def test_get_run_returns_the_detail_and_unknown_ids_are_404(api: Api):
    run = api.create_run()
    got = api.get(f"/runs/{run['id']}")
    assert got.status_code == 200
    assert got.json()["id"] == run["id"]
    assert got.json()["preferences"] == run["preferences"]
    missing = api.get("/runs/999999")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "run 999999 not found"}


def test_list_is_newest_first_with_offset_limit_pagination_and_a_total(api: Api):
    ids = [api.create_run(name=f"run {i}")["id"] for i in range(5)]
    first = api.get("/runs", params={"limit": 2}).json()
    assert first["count"] == 5
    assert [r["id"] for r in first["data"]] == ids[::-1][:2]
    second = api.get("/runs", params={"limit": 2, "offset": 2}).json()
    assert [r["id"] for r in second["data"]] == ids[::-1][2:4]
    last = api.get("/runs", params={"limit": 2, "offset": 4}).json()
    assert [r["id"] for r in last["data"]] == ids[:1]
    assert api.get("/runs", params={"limit": 0}).status_code == 422
    assert api.get("/runs", params={"offset": -1}).status_code == 422


def test_users_see_only_their_own_runs_and_admins_see_all(api: Api):
    mine = api.create_run(user="alice")
    theirs = api.create_run(user="bob")
    assert [r["id"] for r in api.get("/runs", user="alice").json()["data"]] == [mine["id"]]
    assert [r["id"] for r in api.get("/runs", user="bob").json()["data"]] == [theirs["id"]]
    everything = api.get("/runs", user="admin").json()
    assert {r["id"] for r in everything["data"]} == {mine["id"], theirs["id"]}
    assert everything["count"] == 2
    # Another user's run is indistinguishable from a missing one, on every route.
    rid = theirs["id"]
    assert api.get(f"/runs/{rid}", user="alice").status_code == 404
    assert api.post(f"/runs/{rid}/cancel", user="alice").status_code == 404
    assert api.delete(f"/runs/{rid}", user="alice").status_code == 404
    assert api.get(f"/runs/{rid}/metrics", user="alice").status_code == 404
    assert api.get(f"/runs/{rid}/front", user="alice").status_code == 404
    added = api.post(f"/runs/{rid}/preferences", {"vectors": [[1, 1]]}, user="alice")
    assert added.status_code == 404
    assert api.get(f"/runs/{rid}", user="bob").status_code == 200
    assert api.get(f"/runs/{rid}", user="admin").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer pmtl_not-a-real-token"}, {"Authorization": "Basic abc"}],
    ids=["missing", "wrong-token", "wrong-scheme"],
)
def test_api_routes_need_a_valid_bearer_token(api: Api, headers: dict[str, str]):
    for method, path in [
        ("GET", "/api/v1/runs"),
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/problems"),
        ("POST", "/api/v1/runs"),
        ("GET", "/api/v1/runs/1/front"),
    ]:
        response = api.client.request(method, path, headers=headers, json=run_payload())
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert isinstance(response.json()["detail"], str)


def test_me_names_the_token_owner(api: Api):
    assert api.get("/me", user="bob").json() == {"id": 2, "name": "bob", "is_admin": False}
    assert api.get("/me", user="admin").json()["is_admin"] is True


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"problem": "no_such_problem"}, "unknown problem 'no_such_problem'; choose one of:"),
        ({"method": "sgd_magic"}, "unknown method 'sgd_magic'; choose one of:"),
        ({"preferences": {"vectors": [[1.0, -0.5]]}}, "negative entry"),
        ({"preferences": {"vectors": [[0.0, 0.0]]}}, "all zeros"),
        ({"preferences": {"vectors": [[1.0, 0.0, 1.0]]}}, "length 3; the problem has 2 tasks"),
        ({"preferences": {"vectors": [[1.0, 1.0], [1.0]]}}, "preference vector 1 has length 1"),
        ({"training": {"device": "cuda"}}, "cannot be set through the API"),
        ({"problem_options": {"dim": "many"}}, "invalid problem_options"),
    ],
    ids=[
        "unknown-problem",
        "unknown-method",
        "negative",
        "all-zero",
        "too-long",
        "ragged",
        "training-field",
        "options",
    ],
)
def test_invalid_submissions_are_422_with_a_clear_reason(api: Api, overrides, expected):
    response = api.post("/runs", run_payload(**overrides))
    assert response.status_code == 422, response.text
    assert expected in str(response.json()["detail"])
    assert api.get("/runs").json()["count"] == 0


def test_unknown_problem_lists_the_valid_names(api: Api):
    detail = api.post("/runs", run_payload(problem="nope")).json()["detail"]
    assert "concave" in detail


def test_nan_in_the_json_body_is_rejected(api: Api):
    body = (
        '{"name": "x", "problem": "concave", "method": "pareto_mtl",'
        ' "preferences": {"vectors": [[NaN, 1.0]]}}'
    )
    response = api.client.post(
        "/api/v1/runs",
        content=body,
        headers={**api.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "NaN" in str(response.json()["detail"])
    nan_param = body.replace("[[NaN, 1.0]]", "[[1.0, 1.0]]").replace(
        '"method": "pareto_mtl",', '"method": "pareto_mtl", "training": {"lr": NaN},'
    )
    response = api.client.post(
        "/api/v1/runs",
        content=nan_param,
        headers={**api.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "finite" in str(response.json()["detail"])
    huge = body.replace("[[NaN, 1.0]]", "[[1e400, 1.0]]")  # parses as infinity
    response = api.client.post(
        "/api/v1/runs", content=huge, headers={**api.headers(), "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "infinite value" in response.json()["detail"]


def test_invalid_hyperparameters_and_training_values_are_located_422s(api: Api):
    bad_param = api.post("/runs", run_payload(hyperparameters={"no_such_knob": 1}))
    assert bad_param.status_code == 422
    locs = [e["loc"] for e in bad_param.json()["detail"]]
    assert ["body", "hyperparameters", "no_such_knob"] in locs
    bad_lr = api.post("/runs", run_payload(training={"lr": -1}))
    assert bad_lr.status_code == 422
    assert ["body", "training", "lr"] in [e["loc"] for e in bad_lr.json()["detail"]]


def test_too_many_preferences_is_422(api: Api):
    vectors = [[1.0, float(i + 1)] for i in range(257)]
    assert api.post("/runs", run_payload(preferences={"vectors": vectors})).status_code == 422
    assert api.post("/runs", run_payload(preferences={"count": 257})).status_code == 422


def test_the_settings_cap_on_preferences_applies(db_url, tmp_path):
    with Api.start(db_url, tmp_path, max_preferences=4) as api:
        response = api.post("/runs", run_payload(preferences={"count": 5}))
        assert response.status_code == 422
        assert "at most 4 preference vectors" in response.json()["detail"]
        run = api.create_run(preferences={"count": 4})
        more = api.post(f"/runs/{run['id']}/preferences", {"vectors": [[1, 2]]})
        assert more.status_code == 422
        assert "this would make 5" in more.json()["detail"]


def test_oversized_bodies_are_413(db_url, tmp_path):
    with Api.start(db_url, tmp_path, max_request_bytes=4096) as api:
        big = run_payload(name="x" * 10, hyperparameters={"pad": "y" * 8000})
        response = api.post("/runs", big)
        assert response.status_code == 413
        assert "limit of 4096 bytes" in response.json()["detail"]

        def chunks():
            for _ in range(10):
                yield b"x" * 1000

        # No Content-Length: a streamed (chunked) body is counted as it arrives.
        streamed = api.client.post(
            "/api/v1/runs",
            content=chunks(),
            headers={**api.headers(), "Content-Type": "application/json"},
        )
        assert streamed.status_code == 413
        assert api.get("/runs").json()["count"] == 0


def test_cancel_marks_queued_jobs_cancelled_and_is_idempotent(api: Api):
    run = api.create_run()
    cancelled = api.post(f"/runs/{run['id']}/cancel")
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert body["status"] == "cancelled"
    assert [j["state"] for j in body["jobs"]] == ["cancelled"]
    again = api.post(f"/runs/{run['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert api.post("/runs/424242/cancel").status_code == 404
    # A cancelled run takes no new preference vectors.
    added = api.post(f"/runs/{run['id']}/preferences", {"vectors": [[1, 1]]})
    assert added.status_code == 409


def test_cancel_of_a_running_job_asks_the_worker_to_stop(api: Api):
    run = api.create_run()
    api.claim()
    assert api.get(f"/runs/{run['id']}").json()["status"] == "running"
    body = api.post(f"/runs/{run['id']}/cancel").json()
    # The job stays running until its worker notices the flag and stops.
    assert [j["state"] for j in body["jobs"]] == ["running"]


def test_delete_removes_rows_and_the_artifact_tree(api: Api):
    run = api.create_run()
    other = api.create_run()
    claim = api.claim()
    prefs = [p["id"] for p in run["preferences"]]
    api.report(claim, 1, {pid: [0.5, 0.5] for pid in prefs})
    ckpt = api.checkpoint(claim, 1, b"checkpoint bytes")
    run_dir = api.app.state.store.run_dir(run["id"])
    assert ckpt.is_file() and ckpt.is_relative_to(run_dir)
    response = api.delete(f"/runs/{run['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert not run_dir.exists()
    assert api.get(f"/runs/{run['id']}").status_code == 404
    assert api.delete(f"/runs/{run['id']}").status_code == 404
    assert [r["id"] for r in api.get("/runs").json()["data"]] == [other["id"]]


def test_admin_may_delete_another_users_run(api: Api):
    run = api.create_run(user="bob")
    assert api.delete(f"/runs/{run['id']}", user="admin").status_code == 204
    assert api.get("/runs", user="bob").json()["count"] == 0


def test_unknown_routes_and_methods_answer_json(api: Api):
    missing = api.client.get("/api/v1/nothing-here", headers=api.headers())
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
    wrong = api.client.put("/api/v1/runs", headers=api.headers())
    assert wrong.status_code == 405 and "detail" in wrong.json()
    huge_id = api.get(f"/runs/{2**70}")
    assert huge_id.status_code == 422
