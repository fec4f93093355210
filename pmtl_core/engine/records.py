"""What the engine hands its callbacks: start, per-epoch records, divergences, and a stop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Divergence", "EpochRecord", "MetricPoint", "RunInfo", "TrainingStopped"]


class TrainingStopped(RuntimeError):
    """``should_stop`` asked the engine to stop; the last epoch's checkpoint is on disk."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        super().__init__(f"training stopped on request during epoch {epoch}")


@dataclass
class RunInfo:
    """What ``on_start`` receives."""

    problem: str
    method: str
    n_subproblems: int
    n_tasks: int
    task_names: tuple[str, ...]
    metric_names: tuple[str, ...]
    preferences: list[list[float]]
    epochs: int
    start_epoch: int
    device: str
    config: dict[str, Any]


@dataclass
class MetricPoint:
    """Losses and metrics (per task, in task order) of model ``index`` on ``split``."""

    index: int
    split: str
    losses: list[float]
    metrics: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class EpochRecord:
    """What ``on_epoch`` receives after every epoch."""

    epoch: int
    epochs: int
    wall_time: float
    epoch_time: float
    lr: float
    samples_per_second: float
    points: list[MetricPoint]


@dataclass
class Divergence:
    """A subproblem whose loss became NaN or infinite; it is frozen, the others go on."""

    index: int
    preference: list[float]
    epoch: int
    message: str
