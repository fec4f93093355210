"""The typed client against the real API: every route, readable errors, unreachable servers."""

from __future__ import annotations

import json

import httpx
import pytest

from frontend.lib.api_client import ApiClient, ApiError, ApiUnavailable, format_detail
from frontend.lib.models import TERMINAL
from frontend.lib.settings import UISettings
from pmtl_core.export import load_model
from tests.frontend._system import free_port


@pytest.fixture
def client(lab):
    api = ApiClient(lab.api_url, lab.token, timeout=20)
    yield api
    api.close()


def test_catalogue_and_identity(client):
    assert client.healthy()
    assert client.me().name == "ui-tester"
    problems = {p.name: p for p in client.problems()}
    assert problems["concave"].task_names == ["f1", "f2"] and problems["sphere3"].n_tasks == 3
    methods = {m.name: m for m in client.methods()}
    assert "eps" in methods["pareto_mtl"].hyperparameters["properties"]
    assert "epochs" in client.training_schema()["properties"]


def test_run_routes_metrics_front_and_model(client, finished_run):
    run_id = finished_run["id"]
    assert run_id in [r.id for r in client.all_runs()]
    run = client.get_run(run_id)
    assert run.status in TERMINAL and len(run.preferences) >= 4
    page = client.metrics(run_id, after=0, limit=5)
    assert len(page.points) == 5 and page.has_more and page.last_seq == page.points[-1].seq
    rest = client.metrics(run_id, after=page.last_seq)
    assert all(p.seq > page.last_seq for p in rest.points)
    history = client.hypervolume(run_id, "train")
    front = client.front(run_id, "train", ref=history.reference_point)
    assert front.hypervolume == pytest.approx(history.points[-1].hypervolume)
    pref = front.points[0]
    model = client.model_file(run_id, pref.preference_id)
    config = client.model_config(run_id, pref.preference_id)
    assert model.filename.endswith(".safetensors") and model.epoch == 4
    assert load_model(config, model.content)().shape == (20,)


def test_validation_errors_become_readable_messages(client):
    body = {
        "name": "bad",
        "problem": "concave",
        "method": "pareto_mtl",
        "preferences": {"count": 2},
        "hyperparameters": {"eps": -1},
    }
    with pytest.raises(ApiError) as err:
        client.create_run(body)
    assert err.value.status == 422
    assert str(err.value) == "hyperparameters → eps: Input should be greater than or equal to 0"
    with pytest.raises(ApiError, match="run 424242 not found") as missing:
        client.get_run(424242)
    assert missing.value.status == 404


def test_bad_token_and_unreachable_server(lab):
    bad = ApiClient(lab.api_url, "nope", timeout=10)
    with pytest.raises(ApiError) as err:
        bad.me()
    bad.close()
    assert err.value.unauthorized and str(err.value) == "not signed in: invalid or revoked token"
    gone = ApiClient(f"http://127.0.0.1:{free_port()}", "x", timeout=5)
    with pytest.raises(ApiUnavailable, match=r"cannot reach the API at http://127\.0\.0\.1:"):
        gone.problems()
    gone.close()


def test_detail_formatting():
    assert format_detail("plain") == "plain"
    assert (
        format_detail([{"loc": ["query", "after"], "msg": "too small"}, "x"])
        == "after: too small; x"
    )
    assert format_detail(None) == "unknown error"
    assert json.loads(json.dumps(format_detail([]))) == "invalid request"


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("PMTL_API_URL", "http://api.example:9000/")
    monkeypatch.setenv("PMTL_TOKEN", "  ")
    monkeypatch.setenv("PMTL_POLL_SECONDS", "3.5")
    settings = UISettings(_env_file=None)
    assert (settings.api_url, settings.token, settings.poll_seconds) == (
        "http://api.example:9000",
        None,
        3.5,
    )


def test_bad_vectors_are_all_reported_by_the_row_the_user_sees(client):
    body = {
        "name": "bad vectors",
        "problem": "concave",
        "method": "pareto_mtl",
        "preferences": {"vectors": [[1.0, 1.0], [0.0, 0.0], [1.0, -1.0]]},
    }
    with pytest.raises(ApiError) as err:
        client.create_run(body)
    message = str(err.value)
    assert err.value.status == 422
    assert "preference vector 2 is all zeros" in message
    assert "preference vector 3 has a negative entry" in message
    assert "vector 1 " not in message  # the good first row is not blamed


class _Recording(httpx.HTTPTransport):
    """A real transport that notes each request's If-None-Match and the status it got."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str | None, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.seen.append(
            (request.url.path, request.headers.get("If-None-Match"), response.status_code)
        )
        return response


def test_polls_of_an_unchanged_front_are_answered_304_from_the_cache(lab, finished_run):
    transport = _Recording()
    api = ApiClient(lab.api_url, lab.token, timeout=20, transport=transport)
    try:
        run_id = finished_run["id"]
        first = api.front(run_id, "train")
        assert api.front(run_id, "train") == first
        history = api.hypervolume(run_id, "train")
        assert api.hypervolume(run_id, "train") == history
        other = api.front(run_id, "test")  # another query: not answered from the train front
    finally:
        api.close()
    (_, ask1, got1), (_, ask2, got2), (_, ask3, got3), (_, ask4, got4), (_, ask5, got5) = (
        transport.seen
    )
    assert (ask1, got1) == (None, 200) and ask2 and got2 == 304
    assert (ask3, got3) == (None, 200) and ask4 and got4 == 304
    assert (ask5, got5) == (None, 200) and other.split == "test"
