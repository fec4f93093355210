"""Request and response models of the REST API (prefix ``/api/v1``): the contract the UI and
the CLI client are written against. Routes return these shapes, never table rows.

Conventions: ids are integers; timestamps are UTC ISO-8601; per-task values are lists in task
order (``task_names``); a preference vector is a direction in loss space (DESIGN.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RunStatus = Literal["queued", "running", "finished", "failed", "cancelled"]
JobState = Literal["queued", "running", "finished", "failed", "cancelled"]
Split = Literal["train", "test"]

MAX_NAME = 200


class _Strict(BaseModel):
    """Request bodies reject unknown fields, so a typo is a 422 rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- catalogue


class ProblemPublic(BaseModel):
    name: str
    kind: Literal["function", "dataset"]
    summary: str
    n_tasks: int
    task_names: list[str]
    metric_names: list[str]
    options: dict[str, Any] = Field(description="JSON schema of the problem's options")
    default_config: dict[str, Any] = Field(description="training settings that suit the problem")
    reference_point: list[float] | None = Field(
        None, description="default hypervolume reference point (per-task losses)"
    )


class MethodPublic(BaseModel):
    name: str
    summary: str
    uses_preferences: bool
    needs_gradients: bool
    couples_subproblems: bool
    warm_startable: bool
    variant_of: str | None = Field(
        None,
        description="null for a method as its paper describes it; else the method it changes "
        "(a named variant, whose summary says how it differs)",
    )
    learns_pareto_set: bool = Field(
        False, description="one preference-conditioned model for the whole front (psl)"
    )
    problem_kinds: list[str] = Field(
        default_factory=lambda: ["function", "dataset"],
        description="the kinds of problem the method trains",
    )
    hyperparameters: dict[str, Any] = Field(description="JSON schema of the hyperparameters")


class TrainingSchema(BaseModel):
    """JSON schema of the training settings a run may override (``RunCreate.training``)."""

    schema_: dict[str, Any] = Field(alias="schema")

    model_config = ConfigDict(populate_by_name=True)


# ---------------------------------------------------------------- runs


class PreferenceCount(_Strict):
    count: int = Field(ge=1, le=256, description="evenly spread preference vectors")


class PreferenceVectors(_Strict):
    vectors: list[list[float]] = Field(
        min_length=1, max_length=256, description="one non-negative, non-zero vector per model"
    )


class RunCreate(_Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    problem: str = Field(min_length=1, max_length=200)
    problem_options: dict[str, Any] = Field(default_factory=dict)
    method: str = Field(min_length=1, max_length=100)
    preferences: PreferenceCount | PreferenceVectors
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(
        default_factory=dict, description="overrides of the training settings (see /training)"
    )
    seed: int = Field(0, ge=0, le=2**31 - 1)


class PreferencesAdd(_Strict):
    vectors: list[list[float]] = Field(min_length=1, max_length=256)


class EpochProgress(BaseModel):
    """Where a running job is inside the epoch it trains (reported every few seconds)."""

    epoch: int = Field(description="the epoch being trained (1-based); the ones before it are done")
    batch: int = Field(description="batches of this epoch done (steps, for function problems)")
    batches: int = Field(description="batches (steps) per epoch")
    unit: Literal["batch", "step"] = Field(
        "batch", description="what is counted: batches of a data set, or a function's steps"
    )
    fraction: float = Field(description="batch / batches")
    samples_per_s: float | None = Field(
        None, description="training samples per second in this epoch (null: function problem)"
    )
    batches_per_s: float | None = Field(
        None, description="batches (steps) per second in this epoch; null at its first batch"
    )
    seconds_left: float | None = Field(
        None, description="estimated seconds to the end of this epoch (counted from now)"
    )
    job_seconds_left: float | None = Field(
        None,
        description="estimated seconds to the end of the job: this epoch, then the remaining "
        "epochs at the last whole epoch's time; null until an epoch of this attempt ended",
    )
    updated_at: datetime = Field(description="when the training reported this")


class QueuePlace(BaseModel):
    """Where a queued run stands in the queue and what holds the worker slots."""

    position: int = Field(
        description="1-based place of the run's next job in the claim order (1: claimed next)"
    )
    queued: int = Field(description="claimable queued jobs, all users")
    running_jobs: int = Field(description="jobs running now, all users (each holds one slot)")
    running_run_ids: list[int] = Field(description="the runs those jobs belong to")


class Progress(BaseModel):
    jobs_total: int
    jobs_finished: int
    jobs_failed: int
    jobs_running: int
    epoch: int = Field(description="lowest epoch reached among unfinished jobs (or the last)")
    epochs: int
    in_epoch: EpochProgress | None = Field(
        None, description="in-epoch progress of the slowest running job (null when none runs)"
    )


class RunPublic(BaseModel):
    id: int
    name: str
    owner: str
    problem: str
    method: str
    status: RunStatus
    n_tasks: int
    task_names: list[str]
    n_preferences: int
    seed: int
    problem_options: dict[str, Any]
    hyperparameters: dict[str, Any]
    training: dict[str, Any]
    progress: Progress
    hypervolume: float | None = Field(None, description="latest test (else train) hypervolume")
    queue: QueuePlace | None = Field(
        None, description="set while the run has a queued job that workers may claim"
    )
    created_at: datetime
    updated_at: datetime


class RunList(BaseModel):
    data: list[RunPublic]
    count: int = Field(description="total number of runs visible to the caller")


class JobPublic(BaseModel):
    id: int
    state: JobState
    attempts: int
    max_attempts: int
    epoch: int
    epochs: int
    device: str | None
    worker: str | None
    error: str | None
    preference_ids: list[int]
    warm_start: dict[str, Any] | None = Field(
        None, description="preference id -> neighbour preference id it was warm-started from"
    )
    progress: EpochProgress | None = Field(
        None, description="in-epoch progress while the job runs (null otherwise)"
    )
    queue_position: int | None = Field(
        None, description="1-based place in the claim order while queued (1: claimed next)"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class PreferencePublic(BaseModel):
    id: int
    index: int = Field(description="position in the run (0-based)")
    vector: list[float]
    job_id: int
    status: JobState
    epoch: int
    diverged: bool = False
    warm_started_from: int | None = None


class RunDetail(RunPublic):
    preferences: list[PreferencePublic]
    jobs: list[JobPublic]


# ---------------------------------------------------------------- metrics & front


class MetricPointPublic(BaseModel):
    seq: int = Field(description="monotone sequence number; poll with ?after=<last seq>")
    preference_id: int
    epoch: int
    split: Split
    losses: list[float | None] = Field(
        description="per-task losses; null where the model diverged (a non-finite value)"
    )
    metrics: dict[str, list[float | None]]
    wall_time: float = Field(description="seconds since the job started training")


class MetricPage(BaseModel):
    run_id: int
    run_status: RunStatus
    points: list[MetricPointPublic]
    last_seq: int = Field(description="the largest seq returned (or the `after` given)")
    has_more: bool


class FrontPoint(BaseModel):
    preference_id: int
    vector: list[float]
    epoch: int
    status: JobState
    losses: list[float | None] = Field(
        description="per-task losses; null where the model diverged (a non-finite value)"
    )
    metrics: dict[str, list[float | None]]
    non_dominated: bool
    downloadable: bool = Field(description="a checkpoint of this model exists")


class FrontPublic(BaseModel):
    run_id: int
    split: Split
    task_names: list[str]
    reference_point: list[float] | None
    hypervolume: float | None
    spread: float | None = Field(
        None,
        description="Deb's spread of the non-dominated points (pmtl_core.indicators.spread, "
        "without the true front's extremes): 0 means evenly spaced; null below three points",
    )
    points: list[FrontPoint]


class HypervolumePoint(BaseModel):
    epoch: int
    wall_time: float
    hypervolume: float


class HypervolumeHistory(BaseModel):
    run_id: int
    split: Split
    reference_point: list[float] | None
    points: list[HypervolumePoint]


# ---------------------------------------------------------------- users & health


class UserPublic(BaseModel):
    id: int
    name: str
    is_admin: bool


class HealthStatus(BaseModel):
    status: Literal["ok"]


class ReadyStatus(BaseModel):
    status: Literal["ready", "not ready"]
    database: bool
    migrations: bool
    detail: str | None = None


class ErrorResponse(BaseModel):
    """Every 4xx body: ``{"detail": "..."}`` (422 validation errors carry a list)."""

    detail: str | list[dict[str, Any]]
