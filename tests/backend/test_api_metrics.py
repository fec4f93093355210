"""Metric polling, fronts, hypervolume history and warm-started preferences over REST."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from pmtl_core.indicators import spread
from tests.backend._api import Api


def _prefs(run: dict) -> list[int]:
    return [p["id"] for p in run["preferences"]]


def test_after_returns_only_new_points_in_seq_order(api: Api):
    run = api.create_run()
    rid, prefs = run["id"], _prefs(run)
    empty = api.get(f"/runs/{rid}/metrics").json()
    assert empty == {
        "run_id": rid,
        "run_status": "queued",
        "points": [],
        "last_seq": 0,
        "has_more": False,
    }
    claim = api.claim()
    api.report(claim, 1, {pid: [1.0, 2.0] for pid in prefs})
    page = api.get(f"/runs/{rid}/metrics", params={"after": 0}).json()
    assert page["run_status"] == "running"
    assert [p["epoch"] for p in page["points"]] == [1, 1, 1]
    seqs = [p["seq"] for p in page["points"]]
    assert seqs == sorted(seqs) and page["last_seq"] == seqs[-1]
    assert page["points"][0]["losses"] == [1.0, 2.0]
    assert page["points"][0]["metrics"] == {"accuracy": [0.5, 0.5]}
    # Nothing new: the same cursor comes back.
    same = api.get(f"/runs/{rid}/metrics", params={"after": page["last_seq"]}).json()
    assert same["points"] == [] and same["last_seq"] == page["last_seq"]
    api.report(claim, 2, {pid: [0.5, 1.0] for pid in prefs})
    newer = api.get(f"/runs/{rid}/metrics", params={"after": page["last_seq"]}).json()
    assert [p["epoch"] for p in newer["points"]] == [2, 2, 2]
    assert min(p["seq"] for p in newer["points"]) > page["last_seq"]


def test_limit_pages_with_has_more(api: Api):
    run = api.create_run()
    claim = api.claim()
    for epoch in range(1, 4):
        api.report(claim, epoch, {pid: [1.0 / epoch, 1.0] for pid in _prefs(run)})
    seen, after = [], 0
    while True:
        page = api.get(f"/runs/{run['id']}/metrics", params={"after": after, "limit": 4}).json()
        seen += [p["seq"] for p in page["points"]]
        after = page["last_seq"]
        if not page["has_more"]:
            break
        assert len(page["points"]) == 4
    assert len(seen) == 9 and seen == sorted(set(seen))


@pytest.mark.parametrize("params", [{"after": -1}, {"limit": 0}, {"after": "x"}])
def test_bad_cursor_values_are_422(api: Api, params):
    run = api.create_run()
    assert api.get(f"/runs/{run['id']}/metrics", params=params).status_code == 422


def test_polling_during_concurrent_writes_never_misses_a_point(api: Api):
    run = api.create_run(preferences={"count": 2})
    first = api.claim()
    more = api.post(f"/runs/{run['id']}/preferences", {"vectors": [[1, 3], [3, 1]]}).json()
    second = api.claim()
    by_job = {
        first.job_id: [p["id"] for p in more["preferences"] if p["job_id"] == first.job_id],
        second.job_id: [p["id"] for p in more["preferences"] if p["job_id"] == second.job_id],
    }
    epochs = 15

    def write(claim):
        for epoch in range(1, epochs + 1):
            api.report(claim, epoch, {pid: [1.0 / epoch, 0.1] for pid in by_job[claim.job_id]})
            api.report(
                claim, epoch, {pid: [1.0, 0.2] for pid in by_job[claim.job_id]}, split="train"
            )

    writers = [threading.Thread(target=write, args=(c,)) for c in (first, second)]
    for t in writers:
        t.start()
    seen: list[int] = []
    after = 0
    while any(t.is_alive() for t in writers) or after == 0 or len(seen) < 4 * 2 * epochs:
        page = api.get(f"/runs/{run['id']}/metrics", params={"after": after, "limit": 7}).json()
        assert all(p["seq"] > after for p in page["points"])
        seen += [p["seq"] for p in page["points"]]
        after = page["last_seq"]
        if not page["points"] and not any(t.is_alive() for t in writers):
            break
    for t in writers:
        t.join()
    final = api.get(f"/runs/{run['id']}/metrics", params={"after": 0, "limit": 10_000}).json()
    assert len(final["points"]) == 4 * 2 * epochs
    assert seen == [p["seq"] for p in final["points"]]


def test_front_takes_each_preferences_latest_point_and_flags_dominated_ones(api: Api):
    run = api.create_run(preferences={"count": 3})
    a, b, c = _prefs(run)
    claim = api.claim()
    api.report(claim, 1, {a: [3.0, 3.0], b: [3.0, 3.0], c: [3.0, 3.0]})
    api.report(claim, 2, {a: [1.0, 3.0], b: [2.0, 2.0], c: [2.5, 2.5]})
    front = api.get(f"/runs/{run['id']}/front", params={"ref": "4,4"}).json()
    assert front["split"] == "test" and front["task_names"] == ["f1", "f2"]
    assert front["reference_point"] == [4.0, 4.0]
    points = {p["preference_id"]: p for p in front["points"]}
    assert points[a]["epoch"] == 2 and points[a]["losses"] == [1.0, 3.0]
    assert points[a]["non_dominated"] and points[b]["non_dominated"]
    assert not points[c]["non_dominated"]  # (2.5, 2.5) is dominated by (2, 2)
    # Union of [1,4]x[3,4] and [2,4]x[2,4]: 3*1 + 2*2 - overlap 2*1 = 5.
    assert front["hypervolume"] == pytest.approx(5.0)
    assert front["spread"] is None  # two non-dominated points: no spacing to compare
    assert not any(p["downloadable"] for p in front["points"])
    api.checkpoint(claim, 2, b"weights")
    front = api.get(f"/runs/{run['id']}/front", params={"ref": "4,4"}).json()
    assert all(p["downloadable"] for p in front["points"])
    assert api.get(f"/runs/{run['id']}/front", params={"split": "train"}).json()["points"] == []


def test_front_spread_is_the_libraries_over_the_non_dominated_points(api: Api):
    run = api.create_run(preferences={"count": 4})
    a, b, c, d = _prefs(run)
    claim = api.claim()
    # three non-dominated points unevenly spaced, and one dominated that must not count
    rows = {a: [0.0, 2.0], b: [0.2, 1.8], c: [2.0, 0.0], d: [2.5, 2.5]}
    api.report(claim, 1, rows)
    front = api.get(f"/runs/{run['id']}/front").json()
    want = spread([rows[a], rows[b], rows[c]])
    assert want > 0.3 and front["spread"] == pytest.approx(want)
    api.report(claim, 2, {a: [0.0, 2.0], b: [1.0, 1.0], c: [2.0, 0.0], d: [2.5, 2.5]})
    assert api.get(f"/runs/{run['id']}/front").json()["spread"] == pytest.approx(0.0)


def test_front_uses_the_problems_declared_reference_point_by_default(api: Api):
    declared = {p["name"]: p for p in api.get("/problems").json()}["concave"]["reference_point"]
    assert declared == [1.1, 1.1]
    run = api.create_run(preferences={"count": 2})
    a, b = _prefs(run)
    claim = api.claim()
    api.report(claim, 1, {a: [0.2, 0.9], b: [0.9, 0.2]})
    front = api.get(f"/runs/{run['id']}/front").json()
    assert front["reference_point"] == declared
    # Two 0.9 x 0.2 rectangles overlapping in a 0.2 x 0.2 square.
    assert front["hypervolume"] == pytest.approx(2 * 0.9 * 0.2 - 0.2 * 0.2)
    assert api.get(f"/runs/{run['id']}").json()["hypervolume"] == pytest.approx(0.32)


@pytest.mark.parametrize("ref", ["1", "1,2,3", "a,b", "1,inf", "nan,1"])
def test_a_bad_reference_point_is_422(api: Api, ref: str):
    run = api.create_run()
    response = api.get(f"/runs/{run['id']}/front", params={"ref": ref})
    assert response.status_code == 422
    assert "ref" in response.json()["detail"]


def test_hypervolume_history_uses_latest_points_up_to_each_epoch(api: Api):
    run = api.create_run(preferences={"count": 2})
    a, b = _prefs(run)
    claim = api.claim()
    api.report(claim, 1, {a: [3.0, 3.0]}, wall_time=1.5)
    api.report(claim, 2, {b: [1.0, 1.0]}, wall_time=3.0)
    api.report(claim, 3, {a: [0.5, 3.5]}, wall_time=4.5)
    history = api.get(f"/runs/{run['id']}/hypervolume", params={"ref": "4,4"}).json()
    assert history["reference_point"] == [4.0, 4.0]
    assert [p["epoch"] for p in history["points"]] == [1, 2, 3]
    assert [p["wall_time"] for p in history["points"]] == [1.5, 3.0, 4.5]
    hv = [p["hypervolume"] for p in history["points"]]
    assert hv[0] == pytest.approx(1.0)  # a alone
    assert hv[1] == pytest.approx(9.0)  # b dominates a
    assert hv[2] == pytest.approx(9.0 + 0.5 * 0.5)  # a moved to (0.5, 3.5)
    summary = api.get(f"/runs/{run['id']}").json()
    # The run's own hypervolume uses the default reference point (worst losses + 10 %).
    assert summary["hypervolume"] is not None and summary["hypervolume"] > 0


def test_new_preferences_are_warm_started_from_the_nearest_checkpointed_neighbour(api: Api):
    run = api.create_run(preferences={"count": 3})  # (1,0), (.71,.71), (0,1)
    claim = api.claim()
    api.checkpoint(claim, 1, b"ckpt")
    added = api.post(f"/runs/{run['id']}/preferences", {"vectors": [[1.0, 0.2], [0.1, 1.0]]})
    assert added.status_code == 201, added.text
    body = added.json()
    assert body["n_preferences"] == 5 and len(body["jobs"]) == 2
    first, _middle, last, new1, new2 = body["preferences"]
    assert [new1["index"], new2["index"]] == [3, 4]
    assert new1["warm_started_from"] == first["id"]
    assert new2["warm_started_from"] == last["id"]
    job = body["jobs"][1]
    assert job["preference_ids"] == [new1["id"], new2["id"]]
    assert job["warm_start"] == {str(new1["id"]): first["id"], str(new2["id"]): last["id"]}
    assert job["epochs"] == body["jobs"][0]["epochs"]


def test_without_a_checkpoint_or_for_methods_that_cannot_warm_start_there_is_no_warm_start(
    api: Api,
):
    run = api.create_run(preferences={"count": 2})
    body = api.post(f"/runs/{run['id']}/preferences", {"vectors": [[1, 1]]}).json()
    assert body["preferences"][-1]["warm_started_from"] is None
    assert body["jobs"][-1]["warm_start"] is None
    coupled = api.create_run(method="mt2o", preferences={"count": 2})
    claim = api.claim()
    api.checkpoint(claim, 1, b"ckpt")
    body = api.post(f"/runs/{coupled['id']}/preferences", {"vectors": [[1, 1]]}).json()
    methods = {m["name"]: m for m in api.get("/methods").json()}
    if not methods["mt2o"]["warm_startable"]:
        assert body["preferences"][-1]["warm_started_from"] is None
    # Coupled methods still get one job of their own for the new vectors.
    assert len(body["jobs"]) == 2


@pytest.mark.parametrize(
    ("vectors", "expected"),
    [([[1, 1, 1]], "length 3"), ([[-1, 1]], "negative"), ([[0, 0]], "all zeros"), ([], "")],
)
def test_bad_added_preferences_are_422(api: Api, vectors, expected):
    run = api.create_run()
    response = api.post(f"/runs/{run['id']}/preferences", {"vectors": vectors})
    assert response.status_code == 422
    assert expected in str(response.json()["detail"])
    assert api.post("/runs/9999/preferences", {"vectors": [[1, 1]]}).status_code == 404


def test_many_concurrent_pollers_do_not_starve_the_connection_pool(api: Api):
    """More concurrent requests than threads and connections all complete (no pool deadlock)."""
    run = api.create_run(preferences={"count": 5})
    claim = api.claim()
    for epoch in range(1, 21):
        api.report(claim, epoch, {p["id"]: [1.0 / epoch, 0.5] for p in run["preferences"]})
    paths = [f"/api/v1/runs/{run['id']}/metrics?after=0", f"/api/v1/runs/{run['id']}/front"]

    async def poll_all() -> list[int]:
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=api.headers(), timeout=60
        ) as client:
            responses = await asyncio.gather(*(client.get(paths[i % 2]) for i in range(120)))
        return [r.status_code for r in responses]

    started = time.monotonic()
    codes = asyncio.run(asyncio.wait_for(poll_all(), 60))
    assert codes == [200] * 120
    assert time.monotonic() - started < 60
