"""Queue claim rate: how many jobs per second N concurrent dispatchers claim from PostgreSQL.

A fresh PostgreSQL database is migrated and seeded with ``--jobs`` queued jobs (one
preference each, spread over ``--runs`` runs of different users). For each dispatcher count in
``--dispatchers``, every job is put back in the queue and N processes claim in a loop (each
claim is the queue's one atomic ``UPDATE … FOR UPDATE SKIP LOCKED`` plus the run-status
update, exactly :func:`backend.app.queue.claim`), until the queue is empty. Then the same N
processes renew leases of the claimed jobs for ``--renew-seconds`` (the steady-state load of
running jobs). Reports claims/s, renewals/s and claim latency percentiles per N, with the
machine's CPU count and load.

    .venv/bin/python bench/claim_rate.py --dispatchers 1,2,4,8 --jobs 1000

Writes ``bench/results/claim_rate.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import update
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.app import queue  # noqa: E402
from backend.app.db.migrate import upgrade  # noqa: E402
from backend.app.db.models import Job, Run, User  # noqa: E402
from backend.app.db.session import create_db_engine, make_session_factory, session_scope  # noqa: E402

LEASE = 60.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _seed(url: str, runs: int, jobs: int) -> None:
    factory = make_session_factory(create_db_engine(url))
    per_run = max(jobs // runs, 1)
    made = 0
    for r in range(runs):
        with session_scope(factory) as session:
            run = Run(
                owner=User(name=f"user-{r}"),
                name=f"bench {r}",
                problem="concave",
                method="pareto_mtl",
                n_tasks=2,
                task_names=["f1", "f2"],
                training={},
            )
            session.add(run)
            session.flush()
            for _ in range(min(per_run, jobs - made)):
                queue.enqueue(session, run=run, preferences=[[0.5, 0.5]], epochs=1)
                made += 1


def _requeue(url: str) -> None:
    factory = make_session_factory(create_db_engine(url))
    with session_scope(factory) as session:
        session.execute(
            update(Job).values(state="queued", lease_owner=None, lease_expires_at=None, attempts=0)
        )
        session.execute(update(Run).values(status="queued"))


def _dispatcher(url: str, index: int, start: Any, renew_seconds: float, out: Any) -> None:
    """One dispatcher process: claim until the queue is empty, then renew what it holds."""
    factory = make_session_factory(create_db_engine(url, pool_size=2))
    start.wait()
    latencies, held = [], []
    begin = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        lease = queue.claim(factory, worker=f"bench#{index}", device="cpu", lease_seconds=LEASE)
        if lease is None:
            break
        latencies.append(time.perf_counter() - t0)
        held.append(lease)
    claim_end = time.perf_counter()
    renewals = 0
    deadline = time.perf_counter() + renew_seconds
    while held and time.perf_counter() < deadline:
        for lease in held[:50]:
            lease.renew(LEASE)
            renewals += 1
            if time.perf_counter() >= deadline:
                break
    out.put(
        {
            "claims": len(latencies),
            "latencies": latencies,
            "claim_seconds": claim_end - begin,
            "renewals": renewals,
            "renew_seconds": renew_seconds if held else 0.0,
        }
    )


def _round(url: str, n: int, renew_seconds: float) -> dict[str, Any]:
    _requeue(url)
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_dispatcher, args=(url, i, start, renew_seconds, out)) for i in range(n)
    ]
    for proc in procs:
        proc.start()
    time.sleep(3.0)  # every process imported and connected
    t0 = time.perf_counter()
    start.set()
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(60)
    claims = sum(r["claims"] for r in results)
    wall = max(r["claim_seconds"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    renewals = sum(r["renewals"] for r in results)
    return {
        "dispatchers": n,
        "claims": claims,
        "seconds": round(wall, 3),
        "claims_per_second": round(claims / wall, 1),
        "claim_latency_ms": {
            "p50": round(1000 * statistics.median(latencies), 2),
            "p99": round(1000 * _percentile(latencies, 0.99), 2),
        },
        "renewals_per_second": round(renewals / renew_seconds, 1) if renew_seconds else None,
        "elapsed": round(time.perf_counter() - t0, 2),
    }


def main() -> None:
    """Run the rounds and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dispatchers", default="1,2,4,8")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--renew-seconds", type=float, default=3.0)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "PMTL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/claim_rate.json")
    args = parser.parse_args()
    admin = make_url(args.postgres_url).set(drivername="postgresql")
    dsn = admin.render_as_string(hide_password=False)
    name = f"pmtl_claims_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = (
        make_url(args.postgres_url)
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )
    try:
        upgrade(url)
        _seed(url, args.runs, args.jobs)
        rounds = []
        for n in (int(x) for x in args.dispatchers.split(",")):
            result = _round(url, n, args.renew_seconds)
            print(json.dumps(result))
            rounds.append(result)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    report = {
        "benchmark": "claim_rate",
        "database": "postgresql",
        "jobs": args.jobs,
        "runs": args.runs,
        "lease_seconds": LEASE,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
        "rounds": rounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
