"""API load benchmark: open run pages polling a training run, the heavier paging pattern, and
queue dispatch latency with an idle worker.

For each database (SQLite file, PostgreSQL): migrate a fresh database, start the API with
``pmtl serve`` on loopback in a subprocess (its default worker count unless ``--api-workers``),
seed one run (5 preferences x 100 epochs x 2 splits of metric points, written through the queue
as a worker would), start one CPU worker (``pmtl worker --devices cpu``) training a small
MultiMNIST run (a function problem without the raw data), then run two patterns of N concurrent
async httpx clients for D seconds each, while that worker trains:

- ``run_page`` (what an open run page does): every ``--interval`` seconds (the UI's 2 s, random
  phase) ``GET /runs/{id}/metrics?after=<last_seq>`` on the training run, then
  ``GET /runs/{id}/front`` with ``If-None-Match`` of its previous answer (304 when unchanged);
- ``heavy`` (the older pattern): the same cadence on the seeded run, but the metrics cursor
  restarts at a random seq every 20 polls (a new viewer), so pages of up to 1000 points keep
  coming, and ``/front`` without ``If-None-Match`` on a random split.

``--interval 0`` makes clients poll back to back (saturation). Reports requests/s, p50/p99
latency, 304s and errors per pattern, and what else was using the CPU (``ps``, load average).
Then, with ``--dispatch-runs``, submit small runs one at a time to an idle worker and measure
job created → running (``jobs.started_at - jobs.created_at``).

    .venv/bin/python bench/api_load.py --duration 30 --clients 100 --dispatch-runs 20

Writes ``bench/results/api_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
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
import psutil
import psycopg
from sqlalchemy import select
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.app import queue  # noqa: E402
from backend.app.core.security import create_user  # noqa: E402
from backend.app.db.migrate import upgrade  # noqa: E402
from backend.app.db.models import Job, Preference  # noqa: E402
from backend.app.db.session import create_db_engine, make_session_factory, session_scope  # noqa: E402

N_PREFS, N_EPOCHS = 5, 100
DATA_DIR = Path(os.environ.get("PMTL_DATA_DIR", "/work/shared/data"))


def _run_async(coro):
    """Run the clients' event loop (uvloop when installed, as the API's is)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _by_second(starts: list[float]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for start in sorted(starts):
        key = str(int(start))
        counts[key] = counts.get(key, 0) + 1
    return counts


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
        PMTL_DATA_DIR=str(DATA_DIR),
        PMTL_LOG_LEVEL="WARNING",
        PMTL_WORKER_POLL_SECONDS="1.0",
    )
    return env


def _start_api(db_url: str, home: Path, port: int, workers: int | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pmtl_core.cli", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port)] + (["--workers", str(workers)] if workers else [])
    # Own process group: the API's worker processes are stopped with it.
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(db_url, home), start_new_session=True)
    deadline = time.monotonic() + 180  # each API process imports torch
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode}")
        time.sleep(0.2)
    _stop(proc)
    raise RuntimeError("the API did not become ready within 180 s")


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


class _Connection:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams: a load generator that costs
    about a tenth of an httpx request per request, so the clients (on the same cores as the
    API) measure the server rather than themselves. GET only, ``Content-Length`` bodies."""

    def __init__(self, base: str, token: str, timeout: float = 30.0) -> None:
        url = httpx.URL(base)
        self.host, self.port = url.host, url.port or 80
        self.token, self.timeout = token, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(
        self, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-case headers, body) of one GET; reconnects after a failure."""
        try:
            return await asyncio.wait_for(self._get(path, params, headers), self.timeout)
        except BaseException:
            await self.close()
            raise

    async def _get(
        self, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        query = "&".join(f"{k}={v}" for k, v in params.items())
        lines = [
            f"GET {path}?{query} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Authorization: Bearer {self.token}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                fields[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return int(status_line.split()[1]), fields, body

    async def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def _client(
    base: str,
    token: str,
    target: dict[str, Any],
    stop: float,
    seed: int,
    interval: float,
    pattern: str,
    record_from: float = 0.0,
) -> dict[str, Any]:
    rng = random.Random(seed)
    run_id, max_seq = target["run_id"], target["max_seq"]
    next_tick = time.monotonic() + rng.uniform(0, interval)
    stats: dict[str, Any] = {
        "metrics": [],
        "front": [],
        "not_modified": 0,
        "errors": 0,
        "error_kinds": {},
        "slow": [],
    }
    etag: str | None = None
    client = _Connection(base, token)
    try:
        turn = 0 if pattern == "run_page" else seed % 2
        cursor = max_seq if pattern == "run_page" else rng.randint(0, max_seq)
        polls = 0
        while time.monotonic() < stop:
            kind = "metrics" if turn == 0 else "front"
            turn ^= 1
            if interval and kind == "metrics":  # one metrics + one front request per tick
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
                next_tick += interval
                if time.monotonic() >= stop:
                    break
            extra: dict[str, str] = {}
            if kind == "metrics":
                # The heavy pattern starts over at a random cursor every 20 polls (a new viewer
                # opening the run), so pages of up to 1000 points keep coming.
                polls += 1
                if pattern == "heavy" and polls % 20 == 0:
                    cursor = rng.randint(0, max_seq)
                url = f"/api/v1/runs/{run_id}/metrics"
                params: dict[str, Any] = {"after": cursor}
            else:
                url = f"/api/v1/runs/{run_id}/front"
                if pattern == "run_page":
                    params = {"split": "test"}
                    if etag:
                        extra["If-None-Match"] = etag
                else:
                    params = {"split": rng.choice(["test", "train"])}
            start = time.perf_counter()
            try:
                code, fields, content = await client.get(url, params, extra)
                ok = code in (200, 304)
                if code == 304:
                    stats["not_modified"] += 1
                elif ok and kind == "metrics":
                    cursor = json.loads(content)["last_seq"]
                elif ok:
                    json.loads(content)  # a client parses what it gets
                    etag = fields.get("etag")
                label = str(code)
            except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError) as exc:
                ok, label = False, type(exc).__name__
            elapsed = time.perf_counter() - start
            if ok:
                # Latencies of the warm-up (connections opening) are not recorded; errors are.
                if time.monotonic() - elapsed >= record_from:
                    stats[kind].append(elapsed)
                    if elapsed > 0.1:  # when the slow answers started (s after warm-up)
                        stats["slow"].append(round(time.monotonic() - elapsed - record_from, 1))
            else:
                stats["errors"] += 1
                stats["error_kinds"][label] = stats["error_kinds"].get(label, 0) + 1
    finally:
        await client.close()
    return stats


async def _load(
    base: str,
    token: str,
    target: dict[str, Any],
    clients: int,
    duration: float,
    interval: float,
    pattern: str,
    warmup: float,
):
    record_from = time.monotonic() + warmup
    stop = record_from + duration
    results = await asyncio.gather(
        *(
            _client(base, token, target, stop, i, interval, pattern, record_from)
            for i in range(clients)
        )
    )
    wall = time.monotonic() - record_from
    out: dict[str, Any] = {
        "pattern": pattern,
        "clients": clients,
        "warmup_s": warmup,
        "duration_s": round(wall, 2),
    }
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
        not_modified=sum(r["not_modified"] for r in results),
        # Requests over 100 ms by the second they started in: stalls show as clusters.
        over_100ms_by_second=_by_second([s for r in results for s in r["slow"]]),
        errors=errors,
        error_kinds=kinds,
    )
    return out


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process started in its own session, with its children (by process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass


def _synthetic_trainer(db_url: str, seconds_per_epoch: float) -> None:
    """Stand-in for a worker (``--trainer synthetic``): claim the queued job, keep one core busy
    with float32 matrix products and record 5 x 2 metric points per epoch through the queue."""
    import torch

    torch.set_num_threads(1)
    factory = make_session_factory(create_db_engine(db_url))
    claim = None
    while claim is None:
        claim = queue.claim(factory, worker="bench-trainer", device="cpu", lease_seconds=3600)
        time.sleep(0.5)
    with session_scope(factory) as session:
        prefs = [
            p.id
            for p in session.scalars(select(Preference).where(Preference.job_id == claim.job_id))
        ]
    a = torch.randn(256, 256)
    rng = random.Random(1)
    for epoch in range(1, 100_000):
        end = time.monotonic() + seconds_per_epoch
        while time.monotonic() < end:
            a = torch.tanh(a @ a)
        points = [
            queue.MetricIn(
                preference_id=pid,
                epoch=epoch,
                split=split,
                losses=[rng.uniform(0, 1) / epoch, rng.uniform(0, 1) / epoch],
                metrics={"accuracy": [rng.random(), rng.random()]},
                wall_time=epoch * seconds_per_epoch,
            )
            for pid in prefs
            for split in ("train", "test")
        ]
        queue.record_metrics(factory, claim.job_id, claim.lease_token, points)


def _start_worker(db_url: str, home: Path, trainer: str = "worker") -> subprocess.Popen:
    if trainer == "synthetic":
        code = f"import bench.api_load as b; b._synthetic_trainer({db_url!r}, 2.0)"
        return subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env=_env(db_url, home), start_new_session=True
        )
    return subprocess.Popen(
        [sys.executable, "-m", "pmtl_core.cli", "worker", "--devices", "cpu"],
        cwd=ROOT,
        env=_env(db_url, home),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def _training_run(base: str, token: str, worker: subprocess.Popen) -> dict[str, Any]:
    """Submit the run the worker trains during the load; wait for its first metric points."""
    headers = {"Authorization": f"Bearer {token}"}
    if (DATA_DIR / "MNIST" / "raw").is_dir():
        body: dict[str, Any] = {
            "name": "training",
            "problem": "multi_mnist",
            "problem_options": {"train_size": 2000, "test_size": 500},
            "method": "pareto_mtl",
            "preferences": {"count": 5},
            "training": {"epochs": 1000},
        }
    else:  # no raw MNIST files: a function problem keeps the worker busy instead
        body = {
            "name": "training",
            "problem": "concave",
            "method": "pareto_mtl",
            "preferences": {"count": 5},
            "training": {"epochs": 100_000, "steps_per_epoch": 200},
        }
    run = httpx.post(f"{base}/api/v1/runs", json=body, headers=headers, timeout=30).json()
    deadline = time.monotonic() + 900  # a first epoch on a busy 2-core machine
    while time.monotonic() < deadline:
        page = httpx.get(
            f"{base}/api/v1/runs/{run['id']}/metrics", params={"limit": 10_000}, headers=headers
        ).json()
        if page["points"]:
            return {"run_id": run["id"], "max_seq": page["last_seq"], "problem": body["problem"]}
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}")
        time.sleep(1.0)
    raise RuntimeError("the training run wrote no metric point within 900 s")


def _cpu_seconds(api: subprocess.Popen, worker: subprocess.Popen) -> dict[str, float]:
    """CPU seconds used so far by the API processes, the trainer and this client process."""

    def tree(pid: int) -> float:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    own = psutil.Process().cpu_times()
    return {
        "api": tree(api.pid),
        "trainer": tree(worker.pid),
        "clients": own.user + own.system,
    }


def _cpu_snapshot() -> dict[str, Any]:
    """Load average and the busiest processes: what else ran during the measurement."""
    top = subprocess.run(
        ["ps", "-eo", "pid,ni,pcpu,etime,args", "--sort=-pcpu"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()[:9]
    return {
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "top": [line[:160] for line in top],
    }


def _dispatch(base: str, token: str, db_url: str, home: Path, factory, n_runs: int):
    """Submit small runs one by one to an idle worker; created → running latencies."""
    worker = _start_worker(db_url, home)
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
        _stop(worker)
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
            worker = _start_worker(db.url, home, args.trainer)
            result: dict[str, Any] = {"seeded_points": max_seq}
            try:
                training = _training_run(base, token, worker)
                result["training_run"] = training
                targets = {"run_page": training, "heavy": {"run_id": run_id, "max_seq": max_seq}}
                for pattern in args.patterns.split(","):
                    before = _cpu_snapshot()
                    cpu0 = _cpu_seconds(api, worker)
                    load = _run_async(
                        _load(
                            base,
                            token,
                            targets[pattern],
                            args.clients,
                            args.duration,
                            args.interval,
                            pattern,
                            args.warmup,
                        )
                    )
                    load["cpu_before"], load["cpu_after"] = before, _cpu_snapshot()
                    cpu1 = _cpu_seconds(api, worker)
                    load["cpu_s"] = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu1}
                    result[pattern] = load
            finally:
                _stop(worker)
            if args.dispatch_runs:
                httpx.post(
                    f"{base}/api/v1/runs/{result['training_run']['run_id']}/cancel",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
                result["dispatch"] = _dispatch(
                    base, token, db.url, home, factory, args.dispatch_runs
                )
            engine.dispose()
            return result
        finally:
            if api is not None:
                _stop(api)
            db.drop()


def main() -> None:
    """Parse arguments, run the benchmarks, write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per DB")
    parser.add_argument("--clients", type=int, default=100, help="concurrent pollers")
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="seconds of polling before latencies are recorded (connections opening)",
    )
    parser.add_argument(
        "--api-workers",
        type=int,
        default=None,
        help="API worker processes (pmtl serve --workers; default: what pmtl serve picks)",
    )
    parser.add_argument(
        "--trainer",
        choices=["worker", "synthetic"],
        default="worker",
        help="what trains during the load: a real `pmtl worker --devices cpu`, or a stand-in "
        "process keeping one core busy and recording metric points (when no worker can run)",
    )
    parser.add_argument(
        "--patterns", default="run_page,heavy", help="run_page and/or heavy (see the docstring)"
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
            "warmup_s": args.warmup,
            "clients": args.clients,
            "poll_interval_s": args.interval,
            "api_workers": args.api_workers or "pmtl serve default",
            "trainer": args.trainer,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
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
