"""ETags on fronts and hypervolume histories, and the incremental series behind them.

A poller sending ``If-None-Match`` gets 304 while nothing it would see changed, and a new
answer as soon as a point, a job state or a checkpoint changes it. The in-memory series (folded
in point by point, possibly out of epoch order) must agree with a recomputation from all rows.
"""

from __future__ import annotations

import random

import httpx
import pytest

from backend.app.fronts import LatestPoint, RunSeries, SeriesPoint, hypervolume_history
from tests.backend._api import Api


def _prefs(run: dict) -> list[int]:
    return [p["id"] for p in run["preferences"]]


def _get(api: Api, path: str, tag: str, user: str = "alice", **kwargs) -> httpx.Response:
    """GET with ``If-None-Match: tag``."""
    headers = {**api.headers(user), "If-None-Match": tag}
    return api.client.get(f"/api/v1{path}", headers=headers, **kwargs)


@pytest.mark.parametrize("route", ["front", "hypervolume"])
def test_unchanged_answers_are_304_and_new_points_change_the_etag(api: Api, route: str):
    run = api.create_run(preferences={"count": 2})
    a, b = _prefs(run)
    claim = api.claim()
    api.report(claim, 1, {a: [2.0, 1.0], b: [1.0, 2.0]})
    first = api.get(f"/runs/{run['id']}/{route}")
    etag = first.headers["ETag"]
    assert first.status_code == 200 and etag.startswith('"')
    again = _get(api, f"/runs/{run['id']}/{route}", etag)
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == etag
    # Weak form and lists of tags match too; another tag does not.
    for header in (f"W/{etag}", f'"other", {etag}'):
        assert _get(api, f"/runs/{run['id']}/{route}", header).status_code == 304
    assert _get(api, f"/runs/{run['id']}/{route}", '"x"').status_code == 200
    # Points of the other split leave a test-split answer alone ...
    api.report(claim, 1, {a: [9.0, 9.0]}, split="train")
    assert _get(api, f"/runs/{run['id']}/{route}", etag).status_code == 304
    # ... a new point of this split changes it.
    api.report(claim, 2, {a: [0.5, 0.5]})
    changed = _get(api, f"/runs/{run['id']}/{route}", etag)
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    # The reference point is part of the answer, hence of the tag.
    other_ref = api.get(f"/runs/{run['id']}/{route}", params={"ref": "5,5"})
    assert other_ref.headers["ETag"] != changed.headers["ETag"]


def test_front_etag_follows_job_state_and_checkpoints(api: Api):
    run = api.create_run(preferences={"count": 2})
    a, b = _prefs(run)
    claim = api.claim()
    api.report(claim, 1, {a: [2.0, 1.0], b: [1.0, 2.0]})
    url = f"/runs/{run['id']}/front"
    etag = api.get(url).headers["ETag"]
    api.checkpoint(claim, 1, b"weights")  # the points become downloadable
    answer = _get(api, url, etag)
    assert answer.status_code == 200
    assert all(p["downloadable"] for p in answer.json()["points"])
    etag = answer.headers["ETag"]
    api.finish(claim)  # the job's state is shown with every point
    answer = _get(api, url, etag)
    assert answer.status_code == 200
    assert {p["status"] for p in answer.json()["points"]} == {"finished"}


def test_another_users_run_is_404_even_with_its_etag(api: Api):
    run = api.create_run(preferences={"count": 1})
    (a,) = _prefs(run)
    api.report(api.claim(), 1, {a: [1.0, 1.0]})
    etag = api.get(f"/runs/{run['id']}/front").headers["ETag"]
    answer = _get(api, f"/runs/{run['id']}/front", etag, user="bob")
    assert answer.status_code == 404


def test_metric_pages_from_the_series_match_the_rows_across_polls(api: Api):
    run = api.create_run(preferences={"count": 3})
    prefs = _prefs(run)
    claim = api.claim()
    seen: list[int] = []
    cursor = 0
    for epoch in range(1, 8):
        api.report(claim, epoch, {p: [1.0 / epoch, float(epoch)] for p in prefs})
        api.report(claim, epoch, {p: [2.0, 2.0] for p in prefs}, split="train")
        while True:
            page = api.get(f"/runs/{run['id']}/metrics", params={"after": cursor, "limit": 4})
            body = page.json()
            seen += [p["seq"] for p in body["points"]]
            cursor = body["last_seq"]
            if not body["has_more"]:
                break
    everything = api.get(f"/runs/{run['id']}/metrics", params={"limit": 10_000}).json()
    assert seen == [p["seq"] for p in everything["points"]] == sorted(set(seen))
    assert len(seen) == 7 * 3 * 2
    point = everything["points"][0]
    assert point["metrics"] == {"accuracy": [0.5, 0.5]} and point["losses"] == [1.0, 1.0]


def test_incremental_history_equals_recomputation_for_any_arrival_order():
    rng = random.Random(3)
    rows = [
        LatestPoint(pref, epoch, (rng.uniform(0, 3), rng.uniform(0, 3)), float(epoch))
        for pref in range(4)
        for epoch in range(1, 9)
    ]
    rng.shuffle(rows)  # late preferences, replayed epochs: any order of seqs
    series = RunSeries()
    ref = [4.0, 4.0]
    for seq, row in enumerate(rows, start=1):
        series.add(
            [SeriesPoint(seq, row.preference_id, row.epoch, "test", row.losses, {}, row.wall_time)]
        )
        if seq % 5 == 0 or seq == len(rows):
            assert series.history("test", ref) == hypervolume_history(rows[:seq], ref)
    # Points already folded in are ignored when offered again.
    series.add([SeriesPoint(1, 0, 99, "test", (0.0, 0.0), {}, 0.0)])
    assert series.history("test", ref) == hypervolume_history(rows, ref)
    assert series.history("test", [5.0, 5.0]) == hypervolume_history(rows, [5.0, 5.0])
