"""In-epoch progress: the protocol event, its throttled relay, the fenced write of
``jobs.progress`` and what the API makes of it (shown only while current), on SQLite and
PostgreSQL."""

from __future__ import annotations

import itertools
import math
from datetime import timedelta
from types import SimpleNamespace

import pytest

from backend.app import queue
from backend.app.api.live import job_progress
from backend.app.db.models import Job, utcnow
from backend.app.queue.progress import ProgressIn, record_progress
from backend.app.worker.protocol import ProgressEvent, decode_event, encode
from backend.app.worker.training import PROGRESS_EVERY, _Relay
from tests.backend._api import Api


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _relay(batch_size: int | None = 64) -> tuple[_Relay, list, FakeClock]:
    sent: list = []
    clock = FakeClock()
    return _Relay(sent.append, batch_size=batch_size, clock=clock), sent, clock


def test_a_progress_event_survives_the_json_line_round_trip():
    event = ProgressEvent(
        epoch=3, batch=120, batches=469, batches_per_s=4.5, samples_per_s=1152.0, epoch_seconds=98
    )
    back = decode_event(encode(event))
    assert back == event and isinstance(back, ProgressEvent)
    bare = decode_event('{"type": "progress", "epoch": 1, "batch": 0, "batches": 10}')
    assert (bare.batches_per_s, bare.samples_per_s, bare.epoch_seconds) == (None, None, None)


def test_progress_is_throttled_to_one_event_per_interval():
    relay, sent, clock = _relay()
    relay.on_progress(1, 0, 100)  # the first report goes out at once: a sign of life
    for batch in range(1, 100):
        clock.now += 0.125  # 8 batches/s (exact in binary floating point)
        relay.on_progress(1, batch, 100)
    # 12.4 s of batches after the first event: one more event every 2 s (16 batches).
    assert [e.batch for e in sent] == [0, 16, 32, 48, 64, 80, 96]
    assert all(isinstance(e, ProgressEvent) and e.epoch == 1 for e in sent)
    gaps = [b.batch - a.batch for a, b in itertools.pairwise(sent)]
    assert all(g * 0.125 >= PROGRESS_EVERY for g in gaps)


def test_rates_are_measured_within_the_epoch():
    relay, sent, clock = _relay(batch_size=64)
    relay.on_progress(1, 0, 50)
    assert sent[0].batches_per_s is None and sent[0].samples_per_s is None  # nothing done yet
    clock.now += 2.5
    relay.on_progress(1, 10, 50)  # 10 batches in 2.5 s
    assert math.isclose(sent[1].batches_per_s, 4.0)
    assert math.isclose(sent[1].samples_per_s, 4.0 * 64)
    assert sent[1].epoch_seconds is None  # no epoch has ended yet
    relay.on_epoch(SimpleNamespace(epoch=1, wall_time=13.0, epoch_time=12.5, points=[]))
    clock.now += 10.0
    relay.on_progress(2, 0, 50)  # a new epoch restarts the measurement
    clock.now += 1.0
    relay.on_progress(2, 1, 50)  # throttled: 1 s after the last event
    clock.now += 1.0
    relay.on_progress(2, 5, 50)  # 5 batches in 2 s of epoch 2
    assert [(e.epoch, e.batch) for e in sent[-2:]] == [(2, 0), (2, 5)]
    assert math.isclose(sent[-1].batches_per_s, 2.5)
    assert sent[-1].epoch_seconds == 12.5


def test_function_problems_report_steps_per_second_and_no_samples():
    relay, sent, clock = _relay(batch_size=None)
    relay.on_progress(1, 0, 40)
    clock.now += 4.0
    relay.on_progress(1, 20, 40)
    assert math.isclose(sent[-1].batches_per_s, 5.0) and sent[-1].samples_per_s is None


def _claimed(api: Api) -> tuple[dict, queue.Claim]:
    run = api.create_run(training={"epochs": 5})
    return run, api.claim()


def _job(api: Api, job_id: int) -> Job:
    with api.factory() as session:
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


def test_the_write_is_fenced_by_the_lease(api: Api):
    _, claim = _claimed(api)
    progress = ProgressIn(epoch=1, batch=3, batches=10, batches_per_s=2.0, samples_per_s=512.0)
    assert not record_progress(api.factory, claim.job_id, claim.lease_token + 1, progress)
    assert _job(api, claim.job_id).progress is None
    assert record_progress(api.factory, claim.job_id, claim.lease_token, progress)
    stored = _job(api, claim.job_id).progress
    assert stored["lease_token"] == claim.lease_token
    assert (stored["epoch"], stored["batch"], stored["batches"]) == (1, 3, 10)
    # Non-finite or non-positive rates are stored as null (JSON-safe on both dialects).
    odd = ProgressIn(epoch=1, batch=4, batches=10, batches_per_s=math.inf, samples_per_s=-1.0)
    assert record_progress(api.factory, claim.job_id, claim.lease_token, odd)
    stored = _job(api, claim.job_id).progress
    assert stored["batch"] == 4 and stored["batches_per_s"] is None
    assert stored["samples_per_s"] is None
    api.finish(claim)
    assert not record_progress(api.factory, claim.job_id, claim.lease_token, progress)


def test_the_api_shows_progress_only_while_it_is_current(api: Api):
    run, claim = _claimed(api)
    path = f"/runs/{run['id']}"
    assert api.get(path).json()["jobs"][0]["progress"] is None
    assert record_progress(
        api.factory,
        claim.job_id,
        claim.lease_token,
        ProgressIn(epoch=1, batch=25, batches=100, batches_per_s=5.0, samples_per_s=1280.0),
    )
    body = api.get(path).json()
    shown = body["jobs"][0]["progress"]
    assert (shown["epoch"], shown["batch"], shown["batches"]) == (1, 25, 100)
    assert shown["fraction"] == pytest.approx(0.25)
    assert shown["samples_per_s"] == pytest.approx(1280.0)
    assert 0 < shown["seconds_left"] <= 15.0  # 75 batches at 5/s, less the time since
    assert shown["job_seconds_left"] is None  # no whole epoch timed yet
    assert body["progress"]["in_epoch"] == shown
    listed = api.get("/runs").json()["data"][0]["progress"]["in_epoch"]
    timeless = {"seconds_left", "job_seconds_left"}  # counted from each request's clock
    assert {k: v for k, v in listed.items() if k not in timeless} == {
        k: v for k, v in shown.items() if k not in timeless
    }

    # Epoch 1's points are stored: the chart has epoch 1, so its batch count is stale.
    prefs = {p["id"]: [1.0, 2.0] for p in body["preferences"]}
    api.report(claim, 1, prefs)
    body = api.get(path).json()
    assert body["jobs"][0]["progress"] is None and body["progress"]["in_epoch"] is None

    assert record_progress(
        api.factory,
        claim.job_id,
        claim.lease_token,
        ProgressIn(epoch=2, batch=50, batches=100, batches_per_s=5.0, epoch_seconds=21.0),
    )
    shown = api.get(path).json()["jobs"][0]["progress"]
    assert shown["epoch"] == 2 and shown["samples_per_s"] is None and shown["unit"] == "batch"
    # 10 s left in epoch 2, then epochs 3-5 at 21 s each.
    assert 60.0 < shown["job_seconds_left"] <= 10.0 + 3 * 21.0

    api.finish(claim)
    body = api.get(path).json()
    assert body["jobs"][0]["progress"] is None and body["progress"]["in_epoch"] is None


def test_progress_of_an_earlier_claim_is_not_shown():
    job = Job(
        state="running",
        lease_token=2,
        epoch=0,
        epochs=5,
        progress={
            "lease_token": 1,
            "epoch": 1,
            "batch": 5,
            "batches": 10,
            "batches_per_s": 1.0,
            "updated_at": utcnow().isoformat(),
        },
    )
    assert job_progress(job) is None
    job.progress = {**job.progress, "lease_token": 2}
    assert job_progress(job) is not None


def test_time_left_counts_down_from_the_report():
    reported = utcnow() - timedelta(seconds=4)
    job = Job(
        state="running",
        lease_token=1,
        epoch=0,
        epochs=1,
        progress={
            "lease_token": 1,
            "epoch": 1,
            "batch": 40,
            "batches": 100,
            "batches_per_s": 10.0,
            "updated_at": reported.isoformat(),
        },
    )
    view = job_progress(job, now=reported + timedelta(seconds=4))
    assert view is not None and view.seconds_left == pytest.approx(2.0)  # 6 s less 4 s
    late = job_progress(job, now=reported + timedelta(seconds=60))
    assert late is not None and late.seconds_left == 0.0


@pytest.mark.parametrize(
    ("problem", "batch_size"),
    [("tests.pmtl_core._problems:TwoTaskBlobs", 32), ("concave", None)],
    ids=["dataset", "function"],
)
def test_training_reports_samples_for_data_sets_and_steps_for_functions(
    problem, batch_size, tmp_path
):
    from backend.app.worker import training
    from backend.app.worker.protocol import JobSpec

    spec = JobSpec(
        job_id=1,
        run_id=1,
        problem=problem,
        method="linear",
        training={"epochs": 2, "steps_per_epoch": 4, "batch_size": 32},
        epochs=2,
        seed=0,
        device="cpu",
        lease_seconds=60,
        progress_seconds=0.0,  # no throttle: every batch reports
        allow_dotted_problems=True,
        preferences=[[0.5, 0.5], [0.8, 0.2]],
        all_preferences=[[0.5, 0.5], [0.8, 0.2]],
        checkpoint_dir=str(tmp_path / "ckpt"),
    )
    events: list = []
    assert training.train_job(spec, events.append, lambda: False)
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    batches = 256 // 32 if batch_size else 4  # the blobs' 256 samples, or 4 steps
    assert [(e.epoch, e.batch) for e in progress] == [
        (epoch, b) for epoch in (1, 2) for b in range(batches)
    ]
    assert all(e.batches == batches for e in progress)
    assert all(e.unit == ("batch" if batch_size else "step") for e in progress)
    timed = [e for e in progress if e.batch > 0]
    assert all(e.batches_per_s > 0 for e in timed)
    if batch_size is None:
        assert all(e.samples_per_s is None for e in progress)
    else:
        assert all(math.isclose(e.samples_per_s, e.batches_per_s * 32) for e in timed)
    # The second epoch's reports carry the first epoch's duration.
    assert all(e.epoch_seconds is None for e in progress if e.epoch == 1)
    assert all(e.epoch_seconds > 0 for e in progress if e.epoch == 2)
