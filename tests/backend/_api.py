"""``Api``: one app on one database, its users, and a scripted worker using the real queue."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

with warnings.catch_warnings():
    # Starlette prefers the httpx2 package for its test client; httpx (pinned here) still works.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from backend.app import queue
from backend.app.core.config import Settings
from backend.app.core.security import create_user
from backend.app.db.session import session_scope
from backend.app.main import create_app

__all__ = ["Api", "TestClient", "run_payload"]


def run_payload(**overrides: Any) -> dict[str, Any]:
    """A valid ``POST /runs`` body (concave problem, Pareto MTL, three preferences)."""
    body: dict[str, Any] = {
        "name": "demo",
        "problem": "concave",
        "method": "pareto_mtl",
        "preferences": {"count": 3},
        "training": {"epochs": 4},
    }
    body.update(overrides)
    return body


@dataclass
class Api:
    """A started app with a test client and tokens of ``alice``, ``bob`` and ``admin``."""

    app: FastAPI
    client: TestClient
    settings: Settings
    tokens: dict[str, str]

    @classmethod
    @contextmanager
    def start(cls, db_url: str, home: Path, **settings: Any) -> Iterator[Api]:
        """Build the app on ``db_url`` with its data under ``home``."""
        config = Settings(_env_file=None, database_url=db_url, home=home, **settings)
        app = create_app(config)
        tokens = {}
        with session_scope(app.state.session_factory) as session:
            for name, admin in (("alice", False), ("bob", False), ("admin", True)):
                tokens[name] = create_user(session, name, admin)[1]
        with TestClient(app, raise_server_exceptions=False) as client:
            yield cls(app=app, client=client, settings=config, tokens=tokens)

    # ------------------------------------------------------------ HTTP

    def headers(self, user: str = "alice") -> dict[str, str]:
        """Authorization header of ``user``."""
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def get(self, path: str, user: str = "alice", **kwargs: Any) -> httpx.Response:
        """GET ``/api/v1{path}`` as ``user``."""
        return self.client.get(f"/api/v1{path}", headers=self.headers(user), **kwargs)

    def post(self, path: str, json: Any = None, user: str = "alice", **kw: Any) -> httpx.Response:
        """POST JSON to ``/api/v1{path}`` as ``user``."""
        return self.client.post(f"/api/v1{path}", json=json, headers=self.headers(user), **kw)

    def delete(self, path: str, user: str = "alice") -> httpx.Response:
        """DELETE ``/api/v1{path}`` as ``user``."""
        return self.client.delete(f"/api/v1{path}", headers=self.headers(user))

    def create_run(self, user: str = "alice", **overrides: Any) -> dict[str, Any]:
        """Submit a run and return its detail (asserting the 201)."""
        response = self.post("/runs", run_payload(**overrides), user=user)
        assert response.status_code == 201, response.text
        return response.json()

    # ------------------------------------------------------------ scripted worker

    @property
    def factory(self):
        """The app's session factory (what a worker would build from the same settings)."""
        return self.app.state.session_factory

    def claim(self) -> queue.Claim:
        """Lease the oldest queued job as a worker would."""
        claim = queue.claim(self.factory, worker="test-worker", device="cpu", lease_seconds=60)
        assert claim is not None, "no queued job to claim"
        return claim

    def report(
        self,
        claim: queue.Claim,
        epoch: int,
        losses: dict[int, Sequence[float]],
        split: str = "test",
        wall_time: float | None = None,
    ) -> None:
        """Store one epoch's points (preference id → losses) under the claim's lease."""
        points = [
            queue.MetricIn(
                preference_id=pref_id,
                epoch=epoch,
                split=split,
                losses=list(values),
                metrics={"accuracy": [0.5] * len(values)},
                wall_time=float(epoch) if wall_time is None else wall_time,
            )
            for pref_id, values in losses.items()
        ]
        assert queue.record_metrics(self.factory, claim.job_id, claim.lease_token, points)

    def checkpoint(self, claim: queue.Claim, epoch: int, data: bytes) -> Path:
        """Write a checkpoint file through the store and record its artifact row."""
        store = self.app.state.store
        directory = store.checkpoint_dir(claim.run_id, claim.job_id)
        rel = store.relative(directory / f"ckpt-epoch{epoch:04d}.pt")
        sha, size = store.write_bytes(rel, data)
        assert queue.record_artifact(
            self.factory,
            claim.job_id,
            claim.lease_token,
            kind="checkpoint",
            epoch=epoch,
            path=rel,
            sha256=sha,
            size=size,
        )
        return store.resolve(rel)

    def finish(self, claim: queue.Claim) -> None:
        """End the claim's job successfully."""
        assert queue.finish(self.factory, claim.job_id, claim.lease_token)
