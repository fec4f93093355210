"""Client-side shapes of the API's responses (a tolerant mirror of the REST contract).

The UI never imports the backend, so the response models it relies on are declared here.
Unknown fields are ignored, so the server may add fields without breaking the UI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "TERMINAL",
    "Dataset",
    "DatasetColumn",
    "DatasetList",
    "DatasetPreview",
    "Download",
    "EpochProgress",
    "EvaluatedPoint",
    "Evaluation",
    "Front",
    "FrontPoint",
    "HypervolumeHistory",
    "HypervolumePoint",
    "Job",
    "Method",
    "MetricPage",
    "MetricPoint",
    "Preference",
    "Problem",
    "Progress",
    "QueuePlace",
    "Run",
    "RunDetail",
    "RunList",
    "User",
]

Status = Literal["queued", "running", "finished", "failed", "cancelled"]
Split = Literal["train", "test"]

#: Run and job states after which nothing changes any more.
TERMINAL: frozenset[str] = frozenset({"finished", "failed", "cancelled"})


class _Model(BaseModel):
    """Response model: ignores unknown fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Problem(_Model):
    """A registered problem (``GET /problems``)."""

    name: str
    kind: Literal["function", "dataset"]
    summary: str = ""
    n_tasks: int
    task_names: list[str]
    metric_names: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    default_config: dict[str, Any] = Field(default_factory=dict)
    reference_point: list[float] | None = None


class Method(_Model):
    """A registered method (``GET /methods``)."""

    name: str
    summary: str = ""
    uses_preferences: bool = True
    needs_gradients: bool = True
    couples_subproblems: bool = False
    warm_startable: bool = False
    variant_of: str | None = None
    learns_pareto_set: bool = False
    problem_kinds: list[str] = Field(default_factory=lambda: ["function", "dataset"])
    hyperparameters: dict[str, Any] = Field(default_factory=dict)


class EpochProgress(_Model):
    """Where a running job is inside the epoch it trains (``epoch``: the one in progress)."""

    epoch: int
    batch: int
    batches: int
    unit: Literal["batch", "step"] = "batch"
    fraction: float = 0.0
    samples_per_s: float | None = None
    batches_per_s: float | None = None
    seconds_left: float | None = None
    job_seconds_left: float | None = None
    updated_at: datetime | None = None


class QueuePlace(_Model):
    """A queued run's place in the claim order and the runs holding the worker slots."""

    position: int
    queued: int = 0
    running_jobs: int = 0
    running_run_ids: list[int] = Field(default_factory=list)


class Progress(_Model):
    """How far a run's jobs are."""

    jobs_total: int
    jobs_finished: int
    jobs_failed: int
    jobs_running: int
    epoch: int
    epochs: int
    in_epoch: EpochProgress | None = None


class Run(_Model):
    """A run as listed (``GET /runs``)."""

    id: int
    name: str
    owner: str
    problem: str
    method: str
    status: Status
    n_tasks: int
    task_names: list[str]
    n_preferences: int
    seed: int = 0
    problem_options: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    progress: Progress
    hypervolume: float | None = None
    queue: QueuePlace | None = None
    created_at: datetime
    updated_at: datetime


class Job(_Model):
    """One queued unit of training (one or more preference vectors)."""

    id: int
    state: Status
    attempts: int = 0
    max_attempts: int = 1
    epoch: int = 0
    epochs: int = 0
    device: str | None = None
    worker: str | None = None
    error: str | None = None
    preference_ids: list[int] = Field(default_factory=list)
    progress: EpochProgress | None = None
    queue_position: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Preference(_Model):
    """One preference vector of a run (one model)."""

    id: int
    index: int
    vector: list[float]
    job_id: int
    status: Status
    epoch: int = 0
    diverged: bool = False
    warm_started_from: int | None = None


class RunDetail(Run):
    """A run with its preference vectors and jobs (``GET /runs/{id}``)."""

    preferences: list[Preference] = Field(default_factory=list)
    jobs: list[Job] = Field(default_factory=list)


class RunList(_Model):
    """One page of runs."""

    data: list[Run]
    count: int


class MetricPoint(_Model):
    """Losses and metrics of one preference vector after one epoch on one split."""

    seq: int
    preference_id: int
    epoch: int
    split: Split
    losses: list[float | None]
    metrics: dict[str, list[float | None]] = Field(default_factory=dict)
    wall_time: float = 0.0


class MetricPage(_Model):
    """Metric points newer than ``after`` (``GET /runs/{id}/metrics?after=SEQ``)."""

    run_id: int
    run_status: Status
    points: list[MetricPoint]
    last_seq: int
    has_more: bool = False


class FrontPoint(_Model):
    """The newest point of one preference vector on one split."""

    preference_id: int
    vector: list[float]
    epoch: int
    status: Status
    losses: list[float | None]
    metrics: dict[str, list[float | None]] = Field(default_factory=dict)
    non_dominated: bool = False
    downloadable: bool = False


class Front(_Model):
    """A run's current front on one split (``GET /runs/{id}/front``)."""

    run_id: int
    split: Split
    task_names: list[str]
    reference_point: list[float] | None = None
    hypervolume: float | None = None
    spread: float | None = None
    points: list[FrontPoint] = Field(default_factory=list)


class HypervolumePoint(_Model):
    """Hypervolume of the front after one epoch."""

    epoch: int
    wall_time: float
    hypervolume: float


class HypervolumeHistory(_Model):
    """Hypervolume after every epoch (``GET /runs/{id}/hypervolume``)."""

    run_id: int
    split: Split
    reference_point: list[float] | None = None
    points: list[HypervolumePoint] = Field(default_factory=list)


class User(_Model):
    """The owner of the token (``GET /me``)."""

    id: int
    name: str
    is_admin: bool = False


class Download(_Model):
    """A downloaded file: its bytes and the name the server suggests."""

    content: bytes
    filename: str
    epoch: int | None = None


class EvaluatedPoint(_Model):
    """One preference of a learned Pareto set: its losses and metrics per task."""

    vector: list[float]
    losses: list[float | str]
    metrics: dict[str, list[float | str]] = {}


class Evaluation(_Model):
    """Evaluated preferences of a ``psl`` run at one checkpoint (``POST /runs/{id}/evaluate``)."""

    epoch: int
    split: str
    samples: int | None = None
    split_size: int | None = None
    points: list[EvaluatedPoint]


class DatasetColumn(_Model):
    """One column of an uploaded table and its pandas dtype."""

    name: str
    dtype: str


class Dataset(_Model):
    """An uploaded table (``GET /datasets/{id}``)."""

    id: int
    name: str
    format: str
    n_rows: int
    columns: list[DatasetColumn]
    sha256: str
    size_bytes: int
    created_at: datetime


class DatasetList(_Model):
    """The caller's data sets, newest first (``GET /datasets``)."""

    data: list[Dataset]
    count: int


class DatasetPreview(_Model):
    """The first rows of a data set (``GET /datasets/{id}/preview``)."""

    columns: list[str]
    rows: list[list[Any]]
