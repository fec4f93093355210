"""SQLAlchemy 2 models: users, API tokens, runs, preferences, jobs, metric points, artifacts.

The same models serve SQLite and PostgreSQL. Timestamps are stored timezone-aware in UTC (SQLite
keeps them naive; :class:`UTCDateTime` restores the zone on the way out). Per-task values are JSON
lists in task order. ``metric_points.seq`` is a monotone primary key: pollers ask for rows with
``seq > after``; rows are append-only, and one row per (preference, epoch, split) exists at most,
so an epoch replayed after a crash cannot duplicate a point.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "ApiToken",
    "Artifact",
    "Base",
    "Dataset",
    "Job",
    "MetricPoint",
    "Preference",
    "Run",
    "User",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BigInteger ids on PostgreSQL, INTEGER PRIMARY KEY (rowid alias, autoincrement) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete")


class ApiToken(Base):
    """A bearer token, stored only as its SHA-256 (tokens are 256-bit random strings)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12), doc="first characters, to tell tokens apart")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    user: Mapped[User] = relationship(back_populates="tokens")


class Run(Base):
    """One submitted experiment: a problem, a method and its preference vectors."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    problem: Mapped[str] = mapped_column(String(200))
    problem_options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    method: Mapped[str] = mapped_column(String(100))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    training: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    n_tasks: Mapped[int] = mapped_column(Integer)
    task_names: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    owner: Mapped[User] = relationship()
    preferences: Mapped[list[Preference]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="Preference.index"
    )
    jobs: Mapped[list[Job]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="Job.id"
    )


class Job(Base):
    """A unit of work for one device: a group of the run's preference vectors trained together.

    ``lease_owner``/``lease_expires_at`` are set by the atomic claim and renewed by heartbeats;
    ``lease_token`` increases with every claim and fences writes from a worker whose lease was
    taken over. ``reaped_token`` is the token of the last claim whose expired lease the reaper
    ended (cleared when its holder, cut off from the database, gives the attempt back).
    """

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_id", "state", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_token: Mapped[int] = mapped_column(Integer, default=0)
    reaped_token: Mapped[int | None] = mapped_column(Integer, default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    device: Mapped[str | None] = mapped_column(String(50), default=None)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    epochs: Mapped[int] = mapped_column(Integer, default=0)
    warm_start: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: in-epoch progress of the current claim (backend.app.queue.progress), overwritten in place
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    run: Mapped[Run] = relationship(back_populates="jobs")
    preferences: Mapped[list[Preference]] = relationship(
        back_populates="job", order_by="Preference.index"
    )


class Preference(Base):
    """One preference vector of a run, i.e. one model; ``index`` is its position in the run."""

    __tablename__ = "preferences"
    __table_args__ = (UniqueConstraint("run_id", "index"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer, doc="row of this model in its job's stack")
    vector: Mapped[list[Any]] = mapped_column()
    warm_started_from: Mapped[int | None] = mapped_column(
        ForeignKey("preferences.id", ondelete="SET NULL"), default=None
    )
    diverged: Mapped[bool] = mapped_column(Boolean, default=False)
    diverged_epoch: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship(back_populates="preferences")
    job: Mapped[Job] = relationship(back_populates="preferences")


class MetricPoint(Base):
    """Losses and metrics of one model at the end of one epoch on one split."""

    __tablename__ = "metric_points"
    __table_args__ = (
        UniqueConstraint("preference_id", "epoch", "split"),
        Index("ix_metric_points_run_seq", "run_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    preference_id: Mapped[int] = mapped_column(
        ForeignKey("preferences.id", ondelete="CASCADE"), index=True
    )
    epoch: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(10))
    losses: Mapped[list[Any]] = mapped_column()
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    wall_time: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Artifact(Base):
    """A file in the artifact store (checkpoint or exported model), with its size and SHA-256.

    ``path`` is relative to the artifact root and built only from integer ids by the store.
    """

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "kind", "epoch", "preference_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    preference_id: Mapped[int | None] = mapped_column(
        ForeignKey("preferences.id", ondelete="CASCADE"), default=None
    )
    kind: Mapped[str] = mapped_column(String(20))  # "checkpoint" | "model"
    epoch: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    """A practitioner's uploaded table (CSV or Parquet) kept in the artifact store.

    ``path`` is relative to the artifact root (``datasets/{id}/data.{format}``); ``columns`` is
    the list of ``{name, dtype}`` read at upload. Runs name it in ``problem_options.dataset_id``.
    """

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(10))  # "csv" | "parquet"
    path: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    n_rows: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[list[Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
