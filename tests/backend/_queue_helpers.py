"""Databases and rows for the queue and worker tests: migrated SQLite files, throw-away
PostgreSQL databases, and runs with queued jobs created through the queue's own ``enqueue``."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from backend.app import queue
from backend.app.db.migrate import upgrade
from backend.app.db.models import (
    ApiToken,
    Artifact,
    Job,
    MetricPoint,
    Preference,
    Run,
    User,
    utcnow,
)
from backend.app.db.session import create_db_engine, make_session_factory, session_scope
from tests.conftest import require
from tests.settings import POSTGRES_URL

#: The dialects every contract test runs on; PostgreSQL carries the ``postgres`` marker.
DIALECTS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
]


def _admin_conninfo() -> str:
    return make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_available() -> tuple[bool, str]:
    """Whether the PostgreSQL server of ``PMTL_TEST_POSTGRES_URL`` answers, and why not."""
    try:
        with psycopg.connect(_admin_conninfo(), connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        return (
            False,
            f"PostgreSQL at {make_url(POSTGRES_URL).render_as_string()} is unavailable: {error}",
        )
    return True, ""


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, migrated ``pmtl_t_<random>`` database; dropped (connections and all) at exit."""
    name = f"pmtl_t_{secrets.token_hex(6)}"
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sqlite_database(directory: Path) -> Iterator[str]:
    """A migrated SQLite file in ``directory``."""
    url = f"sqlite:///{directory / 'queue.db'}"
    upgrade(url)
    yield url


@contextmanager
def database(dialect: str, directory: Path) -> Iterator[str]:
    """A migrated database of ``dialect`` ("sqlite" or "postgres"); skips without PostgreSQL."""
    if dialect == "postgres":
        ok, reason = postgres_available()
        require(ok, reason)
        with postgres_database() as url:
            yield url
    else:
        with sqlite_database(directory) as url:
            yield url


@contextmanager
def session_factory(url: str) -> Iterator[sessionmaker[Session]]:
    """The service's engine and session factory for ``url``, disposed at exit."""
    engine: Engine = create_db_engine(url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def clear(factory: sessionmaker[Session]) -> None:
    """Delete every row, children first, so each test starts from an empty queue."""
    with session_scope(factory) as session:
        for model in (MetricPoint, Artifact, Preference, Job, Run, ApiToken, User):
            session.execute(delete(model))


def make_run(
    factory: sessionmaker[Session],
    *,
    jobs: int = 1,
    prefs_per_job: int = 2,
    epochs: int = 3,
    max_attempts: int = 3,
    problem: str = "concave",
    method: str = "pareto_mtl",
    training: dict[str, Any] | None = None,
    owner: str | None = None,
) -> tuple[int, list[int]]:
    """A two-task run with ``jobs`` queued jobs of ``prefs_per_job`` vectors; (run id, job ids)."""
    with session_scope(factory) as session:
        user = User(name=owner or f"user-{secrets.token_hex(4)}")
        total = jobs * prefs_per_job
        run = Run(
            owner=user,
            name="queue test",
            problem=problem,
            method=method,
            n_tasks=2,
            task_names=["f1", "f2"],
            training=training or {},
        )
        session.add(run)
        session.flush()
        job_ids = []
        for j in range(jobs):
            prefs = []
            for i in range(prefs_per_job):
                k = j * prefs_per_job + i
                angle = (k + 0.5) / total
                prefs.append(Preference(run=run, index=k, vector=[1.0 - angle, angle]))
            session.add_all(prefs)
            job = queue.enqueue(
                session, run=run, preferences=prefs, epochs=epochs, max_attempts=max_attempts
            )
            job_ids.append(job.id)
        return run.id, job_ids


def job_row(factory: sessionmaker[Session], job_id: int) -> Job:
    """A detached, fully loaded copy of a job row."""
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def run_status(factory: sessionmaker[Session], run_id: int) -> str:
    """The stored status of a run."""
    with session_scope(factory) as session:
        return session.scalar(select(Run.status).where(Run.id == run_id))


def preference_ids(factory: sessionmaker[Session], job_id: int) -> list[int]:
    """Ids of a job's preferences by position."""
    with session_scope(factory) as session:
        stmt = (
            select(Preference.id).where(Preference.job_id == job_id).order_by(Preference.position)
        )
        return list(session.scalars(stmt))


def metric_rows(factory: sessionmaker[Session], run_id: int) -> list[MetricPoint]:
    """All metric points of a run in seq order (detached)."""
    with session_scope(factory) as session:
        rows = list(
            session.scalars(
                select(MetricPoint).where(MetricPoint.run_id == run_id).order_by(MetricPoint.seq)
            )
        )
        session.expunge_all()
        return rows


def points(pref_ids: Sequence[int], epoch: int, value: float = 1.0) -> list[queue.MetricIn]:
    """One train point per preference at ``epoch``."""
    return [
        queue.MetricIn(p, epoch, "train", [value, value + 0.5], {"acc": [0.5, 0.25]}, float(epoch))
        for p in pref_ids
    ]


def bulk_queue(factory: sessionmaker[Session], *, runs: int, jobs_per_run: int) -> list[int]:
    """Many queued one-preference jobs, inserted in bulk (for races); their ids."""
    with session_scope(factory) as session:
        user = User(name=f"bulk-{secrets.token_hex(4)}")
        session.add(user)
        session.flush()
        job_ids: list[int] = []
        for r in range(runs):
            run = Run(
                owner_id=user.id,
                name=f"bulk {r}",
                problem="concave",
                method="linear",
                n_tasks=2,
                task_names=["f1", "f2"],
            )
            session.add(run)
            session.flush()
            jobs = [Job(run_id=run.id, epochs=1) for _ in range(jobs_per_run)]
            session.add_all(jobs)
            session.flush()
            session.add_all(
                Preference(run_id=run.id, job_id=job.id, index=i, position=0, vector=[1.0, 0.0])
                for i, job in enumerate(jobs)
            )
            job_ids += [job.id for job in jobs]
        return job_ids


def expire_lease(factory: sessionmaker[Session], job_id: int, *, ago: float = 3600.0) -> None:
    """End a job's lease by moving its expiry (and last heartbeat) ``ago`` seconds into the
    past, instead of waiting for a real lease to run out: fault tests stay deterministic
    however loaded the machine is."""
    past = utcnow() - timedelta(seconds=ago)
    with session_scope(factory) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_expires_at.is_not(None))
            .values(lease_expires_at=past, heartbeat_at=past)
            .execution_options(synchronize_session=False)
        )
