"""Runs over REST on SQLite and PostgreSQL: submit, list, inspect, cancel, delete, isolation."""

from __future__ import annotations

import copy
import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from backend.app import queue
from backend.app.api import validation
from backend.app.db.models import Job, Run
from backend.app.db.session import session_scope
from pmtl_core.methods import get_method
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
        "in_epoch": None,
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
        ({"preferences": {"vectors": [[1.0, 1.0], [1.0]]}}, "preference vector 2 has length 1"),
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


# ---------------------------------------------------------------- non-finite numbers, fuzzed

#: Number tokens JSON does not have; Python's parser reads them as NaN and ±inf.
NON_FINITE = ("NaN", "Infinity", "-Infinity", "1e400", "-1e400")


class _Raw(str):
    """A token written into the JSON text verbatim (``NaN``, ``1e400``, …)."""


def _json_text(value: Any) -> str:
    """JSON text of ``value``; :class:`_Raw` tokens appear as they are."""
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(k)}: {_json_text(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_json_text(v) for v in value) + "]"
    return json.dumps(value)


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """Every place a value can be put: existing dict entries and list items, a new key of
    every dict and a new last item of every list (recursively)."""
    out: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        out.append((value, "__new__"))
        for key, item in value.items():
            out.append((value, key))
            out += _slots(item)
    elif isinstance(value, list):
        out.append((value, len(value)))
        for i, item in enumerate(value):
            out.append((value, i))
            out += _slots(item)
    return out


_non_finite = st.sampled_from(NON_FINITE).map(_Raw)
_wrong_type = st.one_of(
    st.text(max_size=6),
    st.booleans(),
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def _broken_body(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """``base`` with missing fields, wrong types and unknown keys, plus non-finite numbers."""
    if draw(st.integers(0, 9)) == 0:  # now and then not even an object
        return draw(st.lists(st.one_of(_non_finite, _wrong_type), min_size=1, max_size=3))
    body = copy.deepcopy(base)
    for change in draw(st.lists(st.sampled_from(["drop", "retype", "unknown"]), max_size=3)):
        keys = sorted(body)
        if change == "drop" and keys:
            del body[draw(st.sampled_from(keys))]
        elif change == "retype" and keys:
            body[draw(st.sampled_from(keys))] = draw(_wrong_type)
        else:
            body[draw(st.text(min_size=1, max_size=8))] = draw(st.one_of(_wrong_type, _non_finite))
    for _ in range(draw(st.integers(1, 3))):  # at least one non-finite number somewhere
        container, key = draw(st.sampled_from(_slots(body)))
        token = draw(_non_finite)
        if isinstance(container, list) and key == len(container):
            container.append(token)
        elif key == "__new__":
            container[draw(st.text(min_size=1, max_size=8))] = token
        else:
            container[key] = token
    return body


def _refuse_constant(token: str) -> None:
    raise AssertionError(f"the response is not strict JSON: it contains {token}")


@pytest.mark.parametrize("route", ["runs", "preferences"])
def test_non_finite_numbers_mixed_with_other_errors_never_make_a_server_error(api: Api, route):
    run = api.create_run()
    path = "/api/v1/runs" if route == "runs" else f"/api/v1/runs/{run['id']}/preferences"
    base = run_payload() if route == "runs" else {"vectors": [[1.0, 1.0], [1.0, 2.0]]}
    headers = {**api.headers(), "Content-Type": "application/json"}

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(body=_broken_body(base))
    def check(body: Any) -> None:
        text = _json_text(body)
        response = api.client.post(path, content=text, headers=headers)
        assert 400 <= response.status_code < 500, (text, response.status_code, response.text)
        # Strict JSON (no NaN/Infinity echoed back) with the reason in `detail`.
        payload = json.loads(response.text, parse_constant=_refuse_constant)
        assert payload["detail"], text

    check()
    assert api.get(f"/runs/{run['id']}").json()["n_preferences"] == 3  # nothing was added


# ---------------------------------------------------------------- cancel of a finished run


@pytest.mark.parametrize("outcome", ["finished", "failed"])
def test_cancelling_a_finished_or_failed_run_is_a_no_op(api: Api, outcome: str):
    run = api.create_run()
    rid = run["id"]
    for _ in range(1 if outcome == "finished" else run["jobs"][0]["max_attempts"]):
        claim = api.claim()
        if outcome == "finished":
            api.finish(claim)
        else:
            queue.fail(api.factory, claim.job_id, claim.lease_token, "boom")
    before = api.get(f"/runs/{rid}").json()
    assert before["status"] == outcome

    response = api.post(f"/runs/{rid}/cancel")
    assert response.status_code == 200
    assert response.json() == before  # the run as it was: same status, jobs and times
    assert api.get(f"/runs/{rid}").json() == before
    # It was never cancelled, so it still takes new preference vectors.
    added = api.post(f"/runs/{rid}/preferences", {"vectors": [[1.0, 1.0]]})
    assert added.status_code == 201, added.text
    assert added.json()["status"] == "queued"


# ---------------------------------------------------------------- add preferences vs cancel


def _assert_no_active_job_on_a_cancelled_run(api: Api) -> None:
    with session_scope(api.factory) as session:
        rows = session.execute(
            select(Run.id, Run.status, Run.cancel_requested, Job.id, Job.state).join(
                Job, Job.run_id == Run.id
            )
        ).all()
    for run_id, status, cancel, job_id, state in rows:
        if cancel or status == "cancelled":
            assert state not in ("queued", "running"), (
                f"job {job_id} is {state} on run {run_id} ({status}, cancel={cancel})"
            )
            assert status == "cancelled", (run_id, status)


def test_preferences_added_while_a_cancel_runs_never_stay_queued(api: Api, monkeypatch):
    """The interleaving that used to lose: the cancel commits after add-preferences read the
    run and before it enqueued the new job."""
    run = api.create_run()
    rid = run["id"]
    real = validation.preference_vectors
    reading = threading.Event()
    cancel_answered = threading.Event()

    def slow_preference_vectors(**kwargs: Any) -> list[list[float]]:
        vectors = real(**kwargs)
        reading.set()
        # Unlocked, the cancel completes now; with the run locked it has to wait for us.
        cancel_answered.wait(2.0)
        return vectors

    monkeypatch.setattr(validation, "preference_vectors", slow_preference_vectors)
    answers: dict[str, Any] = {}

    def add() -> None:
        answers["add"] = api.post(f"/runs/{rid}/preferences", {"vectors": [[1.0, 1.0]]})

    def cancel() -> None:
        assert reading.wait(30)
        answers["cancel"] = api.post(f"/runs/{rid}/cancel")
        cancel_answered.set()

    threads = [threading.Thread(target=add), threading.Thread(target=cancel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers["cancel"].status_code == 200, answers["cancel"].text
    assert answers["add"].status_code in (201, 409), answers["add"].text
    _assert_no_active_job_on_a_cancelled_run(api)
    final = api.get(f"/runs/{rid}").json()
    assert final["status"] == "cancelled"
    assert {j["state"] for j in final["jobs"]} == {"cancelled"}


def test_concurrent_adds_and_cancels_leave_no_queued_job_on_a_cancelled_run(api: Api):
    runs = [api.create_run(preferences={"count": 1})["id"] for _ in range(6)]
    statuses: list[int] = []

    def add(rid: int, i: int) -> None:
        statuses.append(
            api.post(f"/runs/{rid}/preferences", {"vectors": [[1.0, float(i + 1)]]}).status_code
        )

    def cancel(rid: int) -> None:
        statuses.append(api.post(f"/runs/{rid}/cancel").status_code)

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = []
        for rid in runs:
            futures += [pool.submit(add, rid, i) for i in range(3)]
            futures.insert(len(futures) - 1, pool.submit(cancel, rid))
        for future in futures:
            future.result(timeout=120)
    assert set(statuses) <= {200, 201, 409}, statuses
    _assert_no_active_job_on_a_cancelled_run(api)
    for rid in runs:
        detail = api.get(f"/runs/{rid}").json()
        assert detail["status"] == "cancelled"
        # Indices stay unique and dense: concurrent adds did not collide.
        assert [p["index"] for p in detail["preferences"]] == list(range(detail["n_preferences"]))


def test_methods_list_the_paper_methods_and_the_named_variant_apart(api: Api):
    methods = {m["name"]: m for m in api.get("/methods").json()}
    assert methods["pareto_mtl"]["variant_of"] is None
    variant = methods["pareto_mtl_restore"]
    assert variant["variant_of"] == "pareto_mtl"
    assert "not the paper" in variant["summary"]
    # the paper's Pareto MTL has no switches back to the variant's rules
    props = methods["pareto_mtl"]["hyperparameters"]["properties"]
    assert set(props) == {"eps", "init_steps", "normalization", "grad_wrt"}
    assert "margin" in variant["hyperparameters"]["properties"]


def test_a_method_refuses_a_kind_of_problem_it_does_not_train(api: Api, monkeypatch):
    methods = {m["name"]: m for m in api.get("/methods").json()}
    assert methods["psl"]["problem_kinds"] == ["function", "dataset"]
    assert methods["psl"]["learns_pareto_set"] is True
    body = run_payload(method="psl", problem="penguins", preferences={"count": 3})
    assert api.create_run(**body)["method"] == "psl"
    # a method limited to function problems (as psl was) refuses a data set with a 422
    monkeypatch.setattr(get_method("psl"), "problem_kinds", ("function",))
    response = api.post("/runs", json=body)
    assert response.status_code == 422
    assert "function problems" in response.text and "penguins" in response.text
