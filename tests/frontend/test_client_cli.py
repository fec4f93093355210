"""``pmtl login|submit|status|watch|download`` against a real API and worker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import torch
import typer
from safetensors.torch import load as load_safetensors
from typer.testing import CliRunner

from backend.app import queue
from backend.app.db.migrate import upgrade
from frontend import client_cli
from frontend.lib.api_client import ApiClient
from pmtl_core import checkpoints, load_model
from pmtl_core.engine import train
from pmtl_core.problems.registry import get_problem
from tests.backend._api import Api
from tests.frontend._system import System


def _pmtl(lab: System, *args: str, env: dict | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "pmtl_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**lab.env, **(env or {})},
    )


@pytest.fixture
def config_home(tmp_path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "config")}


def test_submit_watch_status_download_round_trip(lab, config_home, tmp_path):
    login = _pmtl(lab, "login", "--api-url", lab.api_url, "--token", lab.token, env=config_home)
    assert login.returncode == 0, login.stderr
    saved = tmp_path / "config" / "pmtl" / "client.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    # from now on URL and token come from the login file only
    env = {**config_home, "PMTL_TOKEN": "", "PMTL_API_URL": ""}
    submitted = _pmtl(
        lab,
        "submit",
        "--problem",
        "concave",
        "--method",
        "linear",
        "--prefs",
        "3",
        "--training",
        '{"epochs": 3, "steps_per_epoch": 5}',
        "--name",
        "from the cli",
        "--watch",
        env=env,
    )
    assert submitted.returncode == 0, submitted.stderr
    run_id = int(submitted.stdout.strip().splitlines()[0])
    assert f"run {run_id} finished" in submitted.stderr
    listed = _pmtl(lab, "status", env=env)
    assert listed.returncode == 0 and "from the cli" in listed.stdout
    detail = _pmtl(lab, "status", str(run_id), env=env)
    assert detail.returncode == 0 and "finished" in detail.stdout
    pref_id = lab.api("GET", f"/runs/{run_id}").json()["preferences"][0]["id"]
    fetched = _pmtl(
        lab, "download", str(run_id), str(pref_id), "--out", str(tmp_path / "m"), env=env
    )
    assert fetched.returncode == 0, fetched.stderr
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    model = load_model(config, tmp_path / "m" / "model.safetensors")
    assert model().shape == (20,) and config["epoch"] == 3


def test_client_errors_are_readable(lab, config_home):
    no_token = _pmtl(lab, "status", env={**config_home, "PMTL_TOKEN": ""})
    assert no_token.returncode == 1 and "no API token" in no_token.stderr
    bad = _pmtl(lab, "submit", "--method", "nope", "--token", lab.token, env=config_home)
    assert bad.returncode == 1 and "nope" in bad.stderr and "Traceback" not in bad.stderr
    wrong = _pmtl(lab, "status", "--token", "pmtl_wrong", env=config_home)
    assert wrong.returncode == 1 and "not signed in" in wrong.stderr


class _NewerCheckpointAfterTheWeights(httpx.BaseTransport):
    """The in-process API, where a newer checkpoint is recorded right after the first
    download of a model's weights (training went on between the client's two requests)."""

    def __init__(self, api: Api, land: Callable[[], None]) -> None:
        self.api, self.land, self.landed = api, land, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        reply = self.api.client.send(request)
        if request.url.path.endswith("/model") and not self.landed:
            self.land()
            self.landed = True
        headers = [(k, v) for k, v in reply.headers.items() if k.lower() != "content-length"]
        return httpx.Response(reply.status_code, headers=headers, content=reply.content)


def test_download_writes_weights_and_config_of_one_checkpoint(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'pmtl.db'}"
    upgrade(url)
    with Api.start(url, tmp_path) as api:
        run = api.create_run(preferences={"count": 2}, training={"epochs": 2})
        pref = run["preferences"][0]["id"]
        claim = api.claim()
        store = api.app.state.store
        directory = store.checkpoint_dir(claim.run_id, claim.job_id)
        train(
            get_problem("concave"),
            run["method"],
            torch.tensor([p["vector"] for p in run["preferences"]]),
            {"epochs": 2, "steps_per_epoch": 3, "device": "cpu", "keep_checkpoints": 5},
            checkpoint_dir=directory,
            meta={"problem_options": run["problem_options"]},
        )
        paths = checkpoints.list_checkpoints(directory)

        def record(epoch: int) -> None:
            path = paths[epoch - 1]
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

        record(1)
        transport = _NewerCheckpointAfterTheWeights(api, lambda: record(2))
        client = ApiClient("http://testserver", api.tokens["alice"], transport=transport)
        monkeypatch.setattr(client_cli, "_connect", lambda api_url, token: client)
        app = typer.Typer()
        client_cli.register(app)
        out = tmp_path / "model"
        result = CliRunner().invoke(app, ["download", str(run["id"]), str(pref), "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert transport.landed

    config = json.loads((out / "config.json").read_text())
    weights = (out / "model.safetensors").read_bytes()
    # The pair belongs together: both are epoch 1, though epoch 2 was newest by the config.
    assert config["epoch"] == 1
    x = load_safetensors(weights)["x"]
    assert torch.equal(checkpoints.load(paths[0])["trainer"]["x"][0], x)
    assert torch.equal(load_model(config, out / "model.safetensors")().detach(), x)
    assert "epoch 1" in result.output


def _in_process_client(api: Api, monkeypatch, transport: httpx.BaseTransport) -> typer.Typer:
    client = ApiClient("http://testserver", api.tokens["alice"], transport=transport)
    monkeypatch.setattr(client_cli, "_connect", lambda api_url, token: client)
    app = typer.Typer()
    client_cli.register(app)
    return app


class _Forward(httpx.BaseTransport):
    """The in-process API; ``before_run_read`` runs whenever the client reads a run."""

    def __init__(self, api: Api, before_run_read: Callable[[], None] = lambda: None) -> None:
        self.api, self.before_run_read = api, before_run_read

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and re.fullmatch(r"/api/v1/runs/\d+", request.url.path):
            self.before_run_read()
        reply = self.api.client.send(request)
        headers = [(k, v) for k, v in reply.headers.items() if k.lower() != "content-length"]
        return httpx.Response(reply.status_code, headers=headers, content=reply.content)


def test_submit_watch_prints_one_progress_line_per_update_when_not_a_terminal(
    tmp_path, monkeypatch
):
    url = f"sqlite:///{tmp_path / 'pmtl.db'}"
    upgrade(url)
    with Api.start(url, tmp_path) as api:
        state: dict = {}

        def claim() -> None:
            state["claim"] = api.claim()

        def epoch(n: int) -> Callable[[], None]:
            def report() -> None:
                run = api.get(f"/runs/{state['claim'].run_id}").json()
                ids = [p["id"] for p in run["preferences"]]
                api.report(state["claim"], n, {i: [1.0 / n, 2.0 / n] for i in ids}, "train")

            return report

        steps = [lambda: None, claim, epoch(1), epoch(2), lambda: api.finish(state["claim"])]

        def next_step() -> None:
            if steps:
                steps.pop(0)()

        app = _in_process_client(api, monkeypatch, _Forward(api, next_step))
        monkeypatch.setattr(client_cli.time, "sleep", lambda seconds: None)
        args = ["submit", "--method", "linear", "--prefs", "2", "--training", '{"epochs": 2}']
        result = CliRunner().invoke(app, [*args, "--watch"])  # stdout is not a terminal here

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    run_id = int(lines[0])  # the id stays alone on the first line
    progress = lines[1:]
    assert all(line.startswith(f"run {run_id} ") for line in progress), progress
    assert len(progress) == len(set(progress)) >= 4  # one line per change, no repeats
    assert "queued" in progress[0] and "running" in progress[1]
    assert "epoch 1/2" in progress[2] and "[1.0000, 2.0000]" in progress[2]
    assert "epoch 2/2" in progress[3] and "[0.5000, 1.0000]" in progress[3]
    assert "finished" in progress[-1] and "hypervolume" in progress[-1]
    assert "\x1b[" not in result.stdout  # plain text


def test_download_prints_a_load_line_that_runs_as_printed(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'pmtl.db'}"
    upgrade(url)
    with Api.start(url, tmp_path / "home") as api:
        run = api.create_run(preferences={"count": 2}, training={"epochs": 1})
        claim = api.claim()
        directory = api.app.state.store.checkpoint_dir(claim.run_id, claim.job_id)
        train(
            get_problem("concave"),
            run["method"],
            torch.tensor([p["vector"] for p in run["preferences"]]),
            {"epochs": 1, "steps_per_epoch": 2, "device": "cpu"},
            checkpoint_dir=directory,
            meta={"problem_options": run["problem_options"]},
        )
        path = checkpoints.latest(directory)
        store = api.app.state.store
        assert queue.record_artifact(
            api.factory,
            claim.job_id,
            claim.lease_token,
            kind="checkpoint",
            epoch=1,
            path=store.relative(path),
            sha256=checkpoints.sha256(path),
            size=path.stat().st_size,
        )
        app = _in_process_client(api, monkeypatch, _Forward(api))
        work = tmp_path / "work"
        work.mkdir()
        monkeypatch.chdir(work)
        pref = run["preferences"][1]["id"]
        result = CliRunner().invoke(app, ["download", str(run["id"]), str(pref), "--out", "m3"])

    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (work / "m3").iterdir()) == ["config.json", "model.safetensors"]
    hint = [line.strip() for line in result.output.splitlines() if "load_model(" in line]
    assert len(hint) == 1 and "m3/config.json" in hint[0] and "m3/model.safetensors" in hint[0]
    check = hint[0] + "; import sys; sys.stdout.write(type(model).__name__)"
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=work, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout


def test_api_docs_say_what_the_api_answers(tmp_path):
    """docs/api.md against the API itself: malformed JSON, required fields, test splits."""
    from pmtl_core.problems import describe_problems

    docs = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    url = f"sqlite:///{tmp_path / 'pmtl.db'}"
    upgrade(url)
    with Api.start(url, tmp_path) as api:
        headers = {**api.headers(), "Content-Type": "application/json"}
        malformed = api.client.post("/api/v1/runs", content=b"{not json", headers=headers)
        missing = api.post("/runs", {})
        run = api.create_run(problem="concave")
        claim = api.claim()
        api.report(claim, 1, {p["id"]: [0.5, 0.5] for p in run["preferences"]}, "train")
        function_test_split = api.get(f"/runs/{run['id']}/hypervolume?split=test")

    # the status the docs give to a body that is not JSON is the one the API answers
    errors = next(line for line in docs.split("\n- ") if line.startswith("**Errors**"))
    clauses = [c.strip() for c in " ".join(errors.split()).split(";")]
    about_json = [c for c in clauses if "not JSON" in c or "not valid JSON" in c]
    assert about_json, errors
    assert all(c.startswith(f"`{malformed.status_code}`") for c in about_json), about_json
    # every field the API requires for POST /runs is named as required in the docs
    assert missing.status_code == 422
    required = {e["loc"][-1] for e in missing.json()["detail"] if e["type"] == "missing"}
    assert "name" in required
    section = docs.split("### `POST /runs`", 1)[1].split("\n### ", 1)[0]
    sentence = " ".join(section.split("Required:", 1)[1].split(";", 1)[0].split())
    assert all(f"`{field}`" in sentence for field in required), sentence
    # a function problem has no test split; the docs' split=test examples use data-set runs
    assert function_test_split.status_code == 200 and function_test_split.json()["points"] == []
    kinds = {p["name"]: p["kind"] for p in describe_problems()}
    lines = docs.splitlines()
    example = re.compile(r"/runs/\$?\w+/\S*split=test")
    examples = [i for i, line in enumerate(lines) if example.search(line)]
    assert examples
    for i in examples:
        run = re.search(r"/runs/\$?(\w+)/", lines[i]).group(1)
        # the run is a shell variable set by a `pmtl submit --problem X` above, or a numbered
        # run named in the comment line before the example
        problem = None
        for above in reversed(lines[:i]):
            submitted = re.match(rf"{run}=\$\(pmtl submit .*--problem (\w+)", above)
            named = re.match(rf"# run {run}: an? (\w+) run", above)
            if submitted or named:
                problem = (submitted or named).group(1)
                break
        assert problem, f"docs/api.md line {i + 1}: which problem is run {run}?"
        assert kinds[problem] == "dataset", (i + 1, problem)


def test_the_download_hint_loads_a_table_model_as_a_predictor():
    from pathlib import Path

    from frontend.client_cli import _is_table, load_model_hint

    table = {"model": {"encoder": {"type": "mlp"}, "preprocessing": {"features": []}}}
    assert _is_table(table) and not _is_table({"model": {"encoder": {"type": "lenet"}}})
    hint = load_model_hint(Path("m3/config.json"), Path("m3/model.safetensors"), predictor=True)
    assert hint == (
        "from pmtl_core import load_predictor; "
        "predictor = load_predictor('m3/config.json', 'm3/model.safetensors')"
    )
    compile(hint, "<hint>", "exec")  # it is valid Python as printed
