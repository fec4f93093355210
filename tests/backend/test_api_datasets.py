"""Data sets over REST: upload (CSV, Parquet), list, get, delete, limits and their use by runs.

In-process tests build the app on SQLite and PostgreSQL; the end-to-end test starts a real API
server and a real worker (subprocesses) and runs the whole loop: upload → run → the worker
trains → download → predict with ``pmtl_core.load_predictor`` → ONNX matches torch.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from backend.app.core.security import create_user
from backend.app.db.session import create_db_engine, make_session_factory, session_scope
from pmtl_core import load_predictor
from tests._tables import TARGETS, make_table
from tests.backend._api import Api


def table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """A small two-task table (see :mod:`tests._tables`)."""
    return make_table(n, seed)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def upload(api: Api, data: bytes, filename: str = "t.csv", user: str = "alice", **form):
    return api.client.post(
        "/api/v1/datasets",
        files={"file": (filename, data, "application/octet-stream")},
        data=form,
        headers=api.headers(user),
    )


def table_run(dataset_id: int, **options) -> dict:
    return {
        "name": "table run",
        "problem": "table",
        "method": "pareto_mtl",
        "preferences": {"count": 2},
        "training": {"epochs": 2, "batch_size": 128},
        "problem_options": {"dataset_id": dataset_id, "targets": TARGETS, **options},
    }


def test_a_csv_upload_is_described_listed_fetched_and_deleted(api):
    frame = table()
    data = csv_bytes(frame)
    response = upload(api, data, name="prices")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "prices" and body["format"] == "csv"
    assert body["n_rows"] == len(frame) and body["size_bytes"] == len(data)
    assert [c["name"] for c in body["columns"]] == list(frame.columns)
    assert {c["name"]: c["dtype"] for c in body["columns"]}["x1"] == "float64"
    import hashlib

    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert api.get("/datasets").json()["count"] == 1
    assert api.get(f"/datasets/{body['id']}").json() == body
    stored = Path(api.settings.artifact_root) / "datasets" / str(body["id"])
    assert [p.name for p in stored.iterdir()] == ["data.csv"]
    assert api.delete(f"/datasets/{body['id']}").status_code == 204
    assert api.get(f"/datasets/{body['id']}").status_code == 404
    assert not stored.exists()
    assert not list((Path(api.settings.artifact_root) / "datasets" / "incoming").iterdir())


def test_a_parquet_upload_reports_its_rows_and_dtypes(api):
    frame = table(50)
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    response = upload(api, buffer.getvalue(), filename="t.parquet")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["format"] == "parquet" and body["n_rows"] == 50
    assert len(body["columns"]) == 5


def test_another_users_dataset_is_a_404_and_cannot_be_used(api):
    dataset = upload(api, csv_bytes(table())).json()
    assert api.get(f"/datasets/{dataset['id']}", user="bob").status_code == 404
    assert api.delete(f"/datasets/{dataset['id']}", user="bob").status_code == 404
    assert api.get("/datasets", user="bob").json() == {"data": [], "count": 0}
    response = api.post("/runs", table_run(dataset["id"]), user="bob")
    assert response.status_code == 422
    assert f"Data set {dataset['id']} not found" in response.json()["detail"]


@pytest.mark.parametrize(
    ("data", "filename", "words"),
    [
        (b"", "t.csv", "empty"),
        (b"a,b,c\n", "t.csv", "no data rows"),
        (b"\xff\xfe\x00garbage\x00\x81", "t.csv", "could not be read as a CSV"),
        (b'a,b\n1,"2\n', "t.csv", "could not be read as a CSV"),
        (b"PAR1 not really parquet", "t.parquet", "could not be read as a Parquet"),
    ],
    ids=["empty", "header-only", "binary", "unterminated-quote", "bad-parquet"],
)
def test_unreadable_empty_or_header_only_files_are_a_422_sentence(api, data, filename, words):
    response = upload(api, data, filename=filename)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and words in detail
    assert api.get("/datasets").json()["count"] == 0


def test_a_request_without_a_file_is_a_422(api):
    response = api.client.post(
        "/api/v1/datasets", data={"name": "x"}, files={"other": ("a", b"1")}, headers=api.headers()
    )
    assert response.status_code == 422
    assert "field 'file'" in response.json()["detail"]


def test_uploads_past_the_limit_are_413_and_leave_nothing(db_url, tmp_path):
    with Api.start(db_url, tmp_path, max_upload_mb=0.01) as api:  # ~10 KiB
        big = csv_bytes(table(2000))
        assert len(big) > 20_000
        response = upload(api, big)
        assert response.status_code == 413
        assert "PMTL_MAX_UPLOAD_MB" in response.json()["detail"]
        # A body without Content-Length is counted while it streams.
        boundary = "b0undary"
        parts = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="t.csv"\r\n'
                "Content-Type: text/csv\r\n\r\n"
            ).encode()
            + big
            + f"\r\n--{boundary}--\r\n".encode()
        )
        response = api.client.post(
            "/api/v1/datasets",
            content=iter([parts[i : i + 4096] for i in range(0, len(parts), 4096)]),
            headers={**api.headers(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status_code == 413
        assert upload(api, csv_bytes(table(40))).status_code == 201
        incoming = Path(api.settings.artifact_root) / "datasets" / "incoming"
        assert not list(incoming.iterdir())


def test_row_and_column_caps_and_the_quota(db_url, tmp_path):
    with Api.start(
        db_url, tmp_path, max_dataset_rows=100, max_dataset_columns=4, dataset_quota_mb=0.02
    ) as api:
        response = upload(api, csv_bytes(table(150)[["x1", "x2", "label"]]))
        assert response.status_code == 422 and "more than 100 rows" in response.json()["detail"]
        response = upload(api, csv_bytes(table(50)))
        assert response.status_code == 422 and "at most 4 are accepted" in response.json()["detail"]
        small = csv_bytes(table(90)[["x1", "x2", "label"]])  # ~ 4-5 KiB each
        statuses = [upload(api, small).status_code for _ in range(6)]
        assert statuses[0] == 201 and statuses[-1] == 413
        response = upload(api, small)
        assert "quota" in response.json()["detail"]
        assert upload(api, small, user="bob").status_code == 201  # the quota is per user


def test_run_options_are_checked_against_the_dataset(api):
    frame = table()
    frame["constant"] = 1.0
    dataset = upload(api, csv_bytes(frame)).json()
    ok = api.post("/runs", table_run(dataset["id"]))
    assert ok.status_code == 201, ok.text
    run = ok.json()
    assert run["n_tasks"] == 2 and run["task_names"] == ["label", "price"]
    assert "dataset_path" not in json.dumps(run)

    def detail(**options):
        response = api.post("/runs", table_run(dataset["id"], **options))
        assert response.status_code == 422, response.text
        return str(response.json()["detail"])

    assert "'nope'" in detail(targets=[TARGETS[0], {"column": "nope", "kind": "regression"}])
    assert "'bogus'" in detail(targets=[TARGETS[0], {"column": "price", "kind": "bogus"}])
    assert "'constant'" in detail(
        targets=[TARGETS[0], {"column": "constant", "kind": "regression"}]
    )
    assert "'colour'" in detail(targets=[TARGETS[0], {"column": "colour", "kind": "regression"}])
    assert "'zzz'" in detail(features=["x1", "zzz"])
    assert "two" in detail(targets=[TARGETS[0]]) or "at least 2" in detail(targets=[TARGETS[0]])
    assert "dataset_path" in detail(dataset_path="/etc/passwd")
    response = api.post("/runs", {**table_run(1), "problem_options": {"targets": TARGETS}})
    assert response.status_code == 422 and "dataset_id" in response.json()["detail"]


def test_a_dataset_used_by_a_queued_run_cannot_be_deleted(api):
    dataset = upload(api, csv_bytes(table())).json()
    run = api.create_run(**table_run(dataset["id"]))
    response = api.delete(f"/datasets/{dataset['id']}")
    assert response.status_code == 409
    assert f"run(s) {run['id']}" in response.json()["detail"]
    api.post(f"/runs/{run['id']}/cancel")
    assert api.delete(f"/datasets/{dataset['id']}").status_code == 204


def test_the_table_problem_is_listed_with_its_option_schema(api):
    problems = {p["name"]: p for p in api.get("/problems").json()}
    table_problem = problems["table"]
    assert table_problem["kind"] == "dataset"
    props = table_problem["options"]["properties"]
    assert {"dataset_id", "targets", "features", "test_fraction", "split_seed"} <= set(props)


def test_the_worker_resolves_the_dataset_id_to_its_stored_file(tmp_path):
    from backend.app.datasets import DatasetError, resolve_dataset_options
    from backend.app.storage import ArtifactStore

    store = ArtifactStore(tmp_path)
    stored = tmp_path / "datasets" / "3" / "data.parquet"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"PAR1")
    options = {"dataset_id": 3, "targets": TARGETS, "dataset_path": "/etc/passwd"}
    resolved = resolve_dataset_options("table", options, store)
    assert resolved == {"dataset_id": 3, "targets": TARGETS, "dataset_path": str(stored)}
    assert resolve_dataset_options("table", options, tmp_path) == resolved
    assert resolve_dataset_options("concave", {"dim": 3}, store) == {"dim": 3}
    assert resolve_dataset_options("concave", None, store) == {}
    with pytest.raises(DatasetError, match="Data set 4 is gone"):
        resolve_dataset_options("table", {**options, "dataset_id": 4}, store)


# ---------------------------------------------------------------------- the whole loop

PMTL = [sys.executable, "-m", "pmtl_core.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class _Service:
    """A real API (``pmtl serve``) and worker (``pmtl worker``), each in its own process group."""

    def __init__(self, home: Path, db_url: str) -> None:
        self.home = home
        engine = create_db_engine(db_url)
        try:
            with session_scope(make_session_factory(engine)) as session:
                self.token = create_user(session, "practitioner", False)[1]
        finally:
            engine.dispose()
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PMTL_")}
        self.env.update(
            PMTL_HOME=str(home),
            PMTL_DATABASE_URL=db_url,
            PMTL_WORKER_POLL_SECONDS="0.3",
            PMTL_LOG_LEVEL="WARNING",
        )
        self.procs: list[subprocess.Popen] = []
        self._spawn("api", [*PMTL, "serve", "--port", str(port), "--workers", "1"])
        self._spawn("worker", [*PMTL, "worker", "--devices", "cpu"])

    def _spawn(self, name: str, argv: list[str]) -> None:
        with (self.home / f"{name}.log").open("ab") as log:
            self.procs.append(
                subprocess.Popen(
                    argv,
                    env=self.env,
                    cwd=self.home,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.home.glob("*.log"))
        )

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(
            method, f"{self.url}/api/v1{path}", headers=headers, timeout=120, **kwargs
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def service(db_url, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    system = _Service(home, db_url)
    try:
        _wait(
            lambda: httpx.get(f"{system.url}/healthz", timeout=2).status_code == 200,
            120,
            "the API",
        )
        yield system
    finally:
        system.stop()


@pytest.mark.slow  # two processes start and train: ~1-2 min on 2 busy cores
def test_upload_train_download_predict_and_onnx_through_a_real_server_and_worker(service, tmp_path):
    frame = table(300)
    response = service.request(
        "POST", "/datasets", files={"file": ("prices.csv", csv_bytes(frame))}, data={"name": "p"}
    )
    assert response.status_code == 201, response.text
    dataset = response.json()
    body = table_run(dataset["id"])
    body["training"] = {"epochs": 3, "batch_size": 64, "lr": 3e-3}
    response = service.request("POST", "/runs", json=body)
    assert response.status_code == 201, response.text
    run = response.json()

    def finished():
        detail = service.request("GET", f"/runs/{run['id']}").json()
        return detail if detail["status"] in ("finished", "failed", "cancelled") else None

    detail = _wait(finished, 240, f"run {run['id']} to finish\n{service.logs()}")
    assert detail["status"] == "finished", (detail["jobs"], service.logs())
    pref = detail["preferences"][0]["id"]
    front = service.request("GET", f"/runs/{run['id']}/front", params={"split": "test"}).json()
    assert front["points"], front

    # `pmtl download` writes the files the REST API (and so the UI) serves.
    out = tmp_path / "model"
    cli = subprocess.run(
        [
            *PMTL,
            "download",
            str(run["id"]),
            str(pref),
            "--out",
            str(out),
            "--api-url",
            service.url,
            "--token",
            service.token,
        ],
        env=service.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    weights = service.request("GET", f"/runs/{run['id']}/solutions/{pref}/model")
    config = service.request("GET", f"/runs/{run['id']}/solutions/{pref}/config").json()
    assert (out / "model.safetensors").read_bytes() == weights.content
    assert json.loads((out / "config.json").read_text()) == config

    predictor = load_predictor(out / "config.json", out / "model.safetensors")
    rows = table(60, seed=7).drop(columns=["label", "price"])
    rows.loc[0, "colour"] = "purple"  # unseen category: all zeros, still a prediction
    predictions = predictor.predict(rows)
    assert set(predictions) == {"label", "price"}
    assert set(predictions["label"]) <= {"yes", "no"} and len(predictions["label"]) == 60
    price = predictions["price"]
    assert price.dtype == np.float64 and np.isfinite(price).all()
    assert 80 < float(np.median(price)) < 140  # original units (~115), not standardised

    onnx = service.request(
        "GET", f"/runs/{run['id']}/solutions/{pref}/model", params={"format": "onnx"}
    )
    assert onnx.status_code == 200, onnx.text
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx.content, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["label", "price"]
    got = session.run(None, {"input": predictor.inputs(rows)})
    for ours, theirs in zip(predictor.outputs(rows), got, strict=True):
        np.testing.assert_allclose(theirs, ours, atol=1e-4)

    assert service.request("DELETE", f"/datasets/{dataset['id']}").status_code == 204
    # Finished runs keep their models.
    again = service.request("GET", f"/runs/{run['id']}/solutions/{pref}/model")
    assert again.status_code == 200 and again.content == weights.content
