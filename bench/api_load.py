"""API load benchmark: pollers on metrics/front, and queue dispatch latency with an idle worker.

For each database (SQLite file, PostgreSQL): migrate a fresh database, start the API with
uvicorn on loopback in a subprocess, seed one run (5 preferences x 100 epochs x 2 splits of
metric points, written through the queue as a worker would), then run N concurrent async httpx
clients for D seconds. Each client polls like the UI's run page: every ``--interval`` seconds
(the UI's default 2 s, with a random phase) one ``GET /runs/{id}/metrics?after=`` (following
``last_seq`` from a random start, restarting every 20 polls as a new viewer would) and one
``GET /runs/{id}/front``; ``--interval 0`` makes them poll back to back (saturation: latency
is then clients / throughput). Reports requests/s, p50/p99 latency and errors. Then start a worker
(``pmtl worker --devices cpu``) in a subprocess and submit small runs one at a time,
measuring job created → running (``jobs.started_at - jobs.created_at``).

    .venv/bin/python bench/api_load.py --duration 30 --clients 100 --dispatch-runs 20

Writes ``bench/results/api_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import select
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.app import queue  # noqa: E402
from backend.app.core.security import create_user  # noqa: E402
from backend.app.db.migrate import upgrade  # noqa: E402
from backend.app.db.models import Job  # noqa: E402
from backend.app.db.session import create_db_engine, make_session_factory, session_scope  # noqa: E402

N_PREFS, N_EPOCHS = 5, 100


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Database:
    """A fresh database for one benchmark: a SQLite file or a PostgreSQL database."""

    def __init__(self, kind: str, home: Path, postgres_url: str) -> None:
        self.kind = kind
        self.name = None
        if kind == "sqlite":
            self.url = f"sqlite:///{home / 'pmtl.db'}"
        else:
            self.admin = make_url(postgres_url).set(drivername="postgresql")
            self.name = f"pmtl_b_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(self._dsn(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {self.name}")
            self.url = (
                make_url(postgres_url)
                .set(drivername="postgresql+psycopg", database=self.name)
                .render_as_string(hide_password=False)
            )

    def _dsn(self) -> str:
        return self.admin.render_as_string(hide_password=False)

    def drop(self) -> None:
        """Remove the PostgreSQL database (the SQLite file goes with its directory)."""
        if self.name:
            with psycopg.connect(self._dsn(), autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def _env(db_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PMTL_")}
    env.update(
        PMTL_DATABASE_URL=db_url,
        PMTL_HOME=str(home),
        PMTL_LOG_LEVEL="WARNING",
        PMTL_WORKER_POLL_SECONDS="1.0",
    )
    return env


def _start_api(db_url: str, home: Path, port: int, workers: int = 1) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "backend.cli:app_factory",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--workers",
        str(workers),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(db_url, home))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode}")
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the API did not become ready within 60 s")


def _seed(base: str, token: str, factory) -> tuple[int, int]:
    """One run with N_PREFS x N_EPOCHS x 2 points; returns (run id, largest seq)."""
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "name": "load",
        "problem": "concave",
        "method": "pareto_mtl",
        "preferences": {"count": N_PREFS},
        "training": {"epochs": N_EPOCHS},
    }
    run = httpx.post(f"{base}/api/v1/runs", json=body, headers=headers, timeout=30).json()
    claim = queue.claim(factory, worker="bench-seeder", device="cpu", lease_seconds=3600)
    assert claim is not None
    prefs = [p["id"] for p in run["preferences"]]
    rng = random.Random(0)
    for epoch in range(1, N_EPOCHS + 1):
        points = [
            queue.MetricIn(
                preference_id=pid,
                epoch=epoch,
                split=split,
                losses=[rng.uniform(0, 1) / epoch, rng.uniform(0, 1) / epoch],
                metrics={},
                wall_time=epoch * 0.5,
            )
            for pid in prefs
            for split in ("train", "test")
        ]
        queue.record_metrics(factory, claim.job_id, claim.lease_token, points)
    queue.cancel_running(factory, claim.job_id, claim.lease_token)
    page = httpx.get(
        f"{base}/api/v1/runs/{run['id']}/metrics", params={"limit": 10_000}, headers=headers
    ).json()
    return run["id"], page["last_seq"]


async def _client(
    base: str, token: str, run_id: int, max_seq: int, stop: float, seed: int, interval: float
) -> dict[str, Any]:
    rng = random.Random(seed)
    next_tick = time.monotonic() + rng.uniform(0, interval)
    stats: dict[str, Any] = {"metrics": [], "front": [], "errors": 0, "error_kinds": {}}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        turn = seed % 2
        cursor, polls = rng.randint(0, max_seq), 0
        while time.monotonic() < stop:
            kind = "metrics" if turn == 0 else "front"
            turn ^= 1
            if interval and kind == "metrics":  # one metrics + one front request per tick
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
                next_tick += interval
                if time.monotonic() >= stop:
                    break
            if kind == "metrics":
                # A poller follows last_seq; every 20 polls it starts over at a random cursor
                # (a new viewer opening the run), so pages of up to 1000 points keep coming.
                polls += 1
                if polls % 20 == 0:
                    cursor = rng.randint(0, max_seq)
                url = f"/api/v1/runs/{run_id}/metrics"
                params = {"after": cursor}
            else:
                url = f"/api/v1/runs/{run_id}/front"
                params = {"split": rng.choice(["test", "train"])}
            start = time.perf_counter()
            try:
                response = await client.get(url, params=params)
                ok = response.status_code == 200
                if ok and kind == "metrics":
                    cursor = response.json()["last_seq"]
                label = str(response.status_code)
            except httpx.HTTPError as exc:
                ok, label = False, type(exc).__name__
            elapsed = time.perf_counter() - start
            if ok:
                stats[kind].append(elapsed)
            else:
                stats["errors"] += 1
                stats["error_kinds"][label] = stats["error_kinds"].get(label, 0) + 1
    return stats


async def _load(
    base: str,
    token: str,
    run_id: int,
    max_seq: int,
    clients: int,
    duration: float,
    interval: float,
):
    stop = time.monotonic() + duration
    start = time.perf_counter()
    results = await asyncio.gather(
        *(_client(base, token, run_id, max_seq, stop, i, interval) for i in range(clients))
    )
    wall = time.perf_counter() - start
    out: dict[str, Any] = {"clients": clients, "duration_s": round(wall, 2)}
    every: list[float] = []
    for kind in ("metrics", "front"):
        lat = [x for r in results for x in r[kind]]
        every += lat
        out[kind] = {
            "requests": len(lat),
            "p50_ms": round(_percentile(lat, 0.5) * 1000, 2),
            "p99_ms": round(_percentile(lat, 0.99) * 1000, 2),
        }
    errors = sum(r["errors"] for r in results)
    kinds: dict[str, int] = {}
    for r in results:
        for k, v in r["error_kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
    out.update(
        requests=len(every) + errors,
        requests_per_s=round((len(every) + errors) / wall, 1),
        p50_ms=round(_percentile(every, 0.5) * 1000, 2),
        p99_ms=round(_percentile(every, 0.99) * 1000, 2),
        errors=errors,
        error_kinds=kinds,
    )
    return out


def _dispatch(base: str, token: str, db_url: str, home: Path, factory, n_runs: int):
    """Submit small runs one by one to an idle worker; created → running latencies."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "pmtl_core.cli", "worker", "--devices", "cpu"],
        cwd=ROOT,
        env=_env(db_url, home),
        stdout=subprocess.DEVNULL,
    )
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "name": "dispatch",
        "problem": "concave",
        "method": "linear",
        "preferences": {"count": 1},
        "training": {"epochs": 1, "steps_per_epoch": 1},
    }
    latencies: list[float] = []
    try:
        time.sleep(3.0)  # let the worker start and become idle
        for _ in range(n_runs):
            run = httpx.post(f"{base}/api/v1/runs", json=body, headers=headers, timeout=30).json()
            job_id = run["jobs"][0]["id"]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with session_scope(factory) as session:
                    job = session.scalar(select(Job).where(Job.id == job_id))
                    state, created, started = job.state, job.created_at, job.started_at
                if state in ("finished", "failed", "cancelled"):
                    break
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited with {worker.returncode}")
                time.sleep(0.05)
            else:
                raise RuntimeError(f"job {job_id} did not finish within 120 s")
            if started is not None:
                latencies.append((started - created).total_seconds())
            time.sleep(random.uniform(0.0, 1.0))  # submit at a random phase of the poll loop
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
    return {
        "runs": len(latencies),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "max_s": round(max(latencies), 3) if latencies else None,
        "worker_poll_seconds": 1.0,
    }


def bench(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Load and dispatch figures for one database kind."""
    with tempfile.TemporaryDirectory(prefix=f"pmtl-bench-{kind}-") as tmp:
        home = Path(tmp)
        db = Database(kind, home, args.postgres_url)
        api = None
        try:
            upgrade(db.url)
            engine = create_db_engine(db.url)
            factory = make_session_factory(engine)
            with session_scope(factory) as session:
                _, token = create_user(session, "bench")
            port = _free_port()
            api = _start_api(db.url, home, port, args.api_workers)
            base = f"http://127.0.0.1:{port}"
            run_id, max_seq = _seed(base, token, factory)
            load = asyncio.run(
                _load(base, token, run_id, max_seq, args.clients, args.duration, args.interval)
            )
            load["seeded_points"] = max_seq
            result: dict[str, Any] = {"load": load}
            if args.dispatch_runs:
                result["dispatch"] = _dispatch(
                    base, token, db.url, home, factory, args.dispatch_runs
                )
            engine.dispose()
            return result
        finally:
            if api is not None:
                api.terminate()
                api.wait(timeout=30)
            db.drop()


def main() -> None:
    """Parse arguments, run the benchmarks, write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per DB")
    parser.add_argument("--clients", type=int, default=100, help="concurrent pollers")
    parser.add_argument(
        "--api-workers", type=int, default=1, help="uvicorn worker processes (pmtl serve --workers)"
    )
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between a client's polls (0: none)"
    )
    parser.add_argument("--dispatch-runs", type=int, default=20, help="runs for dispatch latency")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite and/or postgres")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "PMTL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="server on which a throw-away database is created",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "api_load.json")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": {
            "duration_s": args.duration,
            "clients": args.clients,
            "poll_interval_s": args.interval,
            "api_workers": args.api_workers,
            "seed": f"{N_PREFS} preferences x {N_EPOCHS} epochs x 2 splits",
        },
    }
    for kind in args.backends.split(","):
        print(f"benchmarking {kind} ...", file=sys.stderr)
        results[kind] = bench(kind.strip(), args)
        print(json.dumps(results[kind], indent=2), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
