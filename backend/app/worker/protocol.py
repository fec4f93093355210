"""The typed job protocol: a :class:`JobSpec` goes to the training side, :data:`Event` s come back.

The same models are spoken by a local training process (one JSON object per line on its
stdin/stdout, :mod:`backend.app.worker.child`) and by a Ray task (JSON strings yielded by a
streaming generator, :mod:`backend.app.worker.executors.ray`), so the supervisor handles both
alike. Losses may be NaN or infinite (a diverged model): lines are written with Python's
``json`` (which allows them) and the queue stores such values as null.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "CheckpointEvent",
    "CheckpointRef",
    "DivergenceEvent",
    "EpochEvent",
    "ErrorEvent",
    "Event",
    "FinishedEvent",
    "InitSource",
    "JobSpec",
    "PointOut",
    "ProgressEvent",
    "StartEvent",
    "StoppedEvent",
    "decode_event",
    "encode",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckpointRef(_Model):
    """A recorded checkpoint: its epoch, absolute file path and the SHA-256 of its row."""

    epoch: int
    path: str
    sha256: str


class InitSource(_Model):
    """Where a warm-started model comes from: a neighbour job's checkpoints and stack row."""

    position: int
    checkpoints: list[CheckpointRef]


class JobSpec(_Model):
    """Everything the training side needs to train one job; built from the database.

    Paths are absolute on the supervisor's (dispatcher's) host: a Ray node must see the shared
    artifact directory at the same path.
    """

    job_id: int
    run_id: int
    problem: str
    problem_options: dict[str, Any] = Field(default_factory=dict)
    method: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    epochs: int
    device: str
    lease_seconds: float
    #: least seconds between two progress events (each is a database write)
    progress_seconds: float = 2.0
    download_data: bool = False
    allow_dotted_problems: bool = False
    preferences: list[list[float]]
    all_preferences: list[list[float]]
    checkpoint_dir: str
    checkpoints: list[CheckpointRef] = Field(default_factory=list)
    init_from: list[InitSource | None] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


class PointOut(_Model):
    """Losses and metrics of one stacked model (``index``) on one split at one epoch."""

    index: int
    split: str
    losses: list[float]
    metrics: dict[str, list[float]] = Field(default_factory=dict)


class StartEvent(_Model):
    """Training starts after ``resume_epoch``; newer files were renamed ``*.discarded``."""

    type: Literal["start"] = "start"
    resume_epoch: int
    discarded: list[str] = Field(default_factory=list)
    keep_checkpoints: int | None = None


class EpochEvent(_Model):
    """The metric points of one finished epoch."""

    type: Literal["epoch"] = "epoch"
    epoch: int
    wall_time: float = 0.0
    epoch_time: float = 0.0
    points: list[PointOut]


class ProgressEvent(_Model):
    """Where training is inside ``epoch``: ``batch`` of ``batches`` done, and how fast.

    Rates are measured on the training side over the epoch so far. ``samples_per_s`` counts
    training samples (batch size x batches / elapsed) and is None for function problems,
    which have no batch (their "batches" are optimisation steps: ``batches_per_s`` is then
    steps/s). ``unit`` says which. ``epoch_seconds`` is how long the last whole epoch of this
    attempt took (evaluation included), None before one ended. Throttled by the sender.
    """

    type: Literal["progress"] = "progress"
    epoch: int
    batch: int
    batches: int
    unit: Literal["batch", "step"] = "batch"
    batches_per_s: float | None = None
    samples_per_s: float | None = None
    epoch_seconds: float | None = None


class CheckpointEvent(_Model):
    """A checkpoint file written at the end of ``epoch``, with its checksum and size."""

    type: Literal["checkpoint"] = "checkpoint"
    epoch: int
    path: str
    sha256: str
    size: int


class DivergenceEvent(_Model):
    """The stacked model ``index`` diverged at ``epoch`` and was frozen by the engine."""

    type: Literal["divergence"] = "divergence"
    index: int
    epoch: int
    message: str = ""


class FinishedEvent(_Model):
    """Training ran every epoch."""

    type: Literal["finished"] = "finished"


class StoppedEvent(_Model):
    """Training stopped when asked to, between two batches; the last checkpoint is on disk."""

    type: Literal["stopped"] = "stopped"
    epoch: int


class ErrorEvent(_Model):
    """Training raised: the exception (type and message) and, for the logs, its traceback."""

    type: Literal["error"] = "error"
    message: str
    traceback: str = ""


#: Any event of the protocol, told apart by its ``type``.
Event = Annotated[
    StartEvent
    | EpochEvent
    | ProgressEvent
    | CheckpointEvent
    | DivergenceEvent
    | FinishedEvent
    | StoppedEvent
    | ErrorEvent,
    Field(discriminator="type"),
]
_EVENT: TypeAdapter[Any] = TypeAdapter(Event)

#: Events that end a training (the outcome the supervisor concludes from).
OUTCOMES = (FinishedEvent, StoppedEvent, ErrorEvent)


def encode(model: BaseModel) -> str:
    """One JSON line (without newline) for a spec or an event; NaN and inf are kept."""
    return json.dumps(model.model_dump(mode="python"))


def decode_event(line: str | bytes) -> Event:
    """Parse one event line; ``ValueError`` (pydantic's ValidationError) if it is not one."""
    return _EVENT.validate_python(json.loads(line))


def decode_spec(line: str | bytes) -> JobSpec:
    """Parse the job spec line."""
    return JobSpec.model_validate(json.loads(line))
