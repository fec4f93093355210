"""Fronts and hypervolume from stored metric points (pure functions, no database).

Reference point of the hypervolume, in order of precedence: the one the client passes
(``?ref=``), the problem's own ``reference_point`` (``GET /problems``), ``(2.0, …, 2.0)`` for
data-set problems (losses of well-trained classifiers are far below 2), and for function problems
the component-wise maximum of the losses considered, pushed out by 10 % of its magnitude
(at least 1e-6) so the worst point still contributes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pmtl_core.indicators import hypervolume, non_dominated

__all__ = [
    "DATASET_REFERENCE",
    "HistoryPoint",
    "LatestPoint",
    "default_reference",
    "front_hypervolume",
    "hypervolume_history",
    "is_finite_row",
    "latest_points",
    "non_dominated_flags",
    "parse_reference",
]

#: Per-task reference value for data-set problems without their own reference point.
DATASET_REFERENCE = 2.0


@dataclass(frozen=True)
class LatestPoint:
    """One stored metric point, reduced to what fronts need."""

    preference_id: int
    epoch: int
    losses: tuple[float, ...]
    wall_time: float = 0.0


@dataclass(frozen=True)
class HistoryPoint:
    """Hypervolume of the front made of each preference's latest point up to ``epoch``."""

    epoch: int
    wall_time: float
    hypervolume: float


def is_finite_row(losses: Sequence[float]) -> bool:
    """Whether every loss is a finite number."""
    return all(isinstance(x, int | float) and math.isfinite(x) for x in losses)


def latest_points(points: Iterable[LatestPoint]) -> dict[int, LatestPoint]:
    """The newest point (highest epoch) of each preference."""
    latest: dict[int, LatestPoint] = {}
    for point in points:
        seen = latest.get(point.preference_id)
        if seen is None or point.epoch > seen.epoch:
            latest[point.preference_id] = point
    return latest


def parse_reference(text: str, n_tasks: int) -> list[float]:
    """``"a,b"`` → ``[a, b]``; ``ValueError`` unless there are ``n_tasks`` finite numbers."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(
            f"ref must be {n_tasks} comma-separated numbers, one per task, got {text!r}"
        ) from None
    if len(values) != n_tasks:
        raise ValueError(f"ref must have {n_tasks} values (one per task), got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"ref values must be finite, got {text!r}")
    return values


def default_reference(
    kind: str, n_tasks: int, declared: Sequence[float] | None, losses: Iterable[Sequence[float]]
) -> list[float] | None:
    """The reference point when the client gives none (see the module docstring)."""
    if declared is not None and len(declared) == n_tasks:
        return [float(v) for v in declared]
    if kind == "dataset":
        return [DATASET_REFERENCE] * n_tasks
    rows = [row for row in losses if len(row) == n_tasks and is_finite_row(row)]
    if not rows:
        return None
    worst = [max(row[i] for row in rows) for i in range(n_tasks)]
    return [w + max(0.1 * abs(w), 1e-6) for w in worst]


def front_hypervolume(
    losses: Sequence[Sequence[float]], ref: Sequence[float] | None
) -> float | None:
    """Hypervolume of the finite rows of ``losses`` against ``ref`` (None without a ref)."""
    if ref is None:
        return None
    rows = [list(row) for row in losses if len(row) == len(ref) and is_finite_row(row)]
    if not rows:
        return 0.0
    value = hypervolume(rows, list(ref))
    return value if math.isfinite(value) else None


def non_dominated_flags(losses: Sequence[Sequence[float]]) -> list[bool]:
    """Per row: True when finite and not dominated by another finite row."""
    finite = [i for i, row in enumerate(losses) if is_finite_row(row)]
    flags = [False] * len(losses)
    if finite:
        mask = non_dominated([list(losses[i]) for i in finite]).tolist()
        for i, keep in zip(finite, mask, strict=True):
            flags[i] = bool(keep)
    return flags


def hypervolume_history(
    points: Iterable[LatestPoint], ref: Sequence[float] | None
) -> list[HistoryPoint]:
    """Hypervolume after every epoch, each preference contributing its latest point so far."""
    if ref is None:
        return []
    by_epoch: dict[int, list[LatestPoint]] = {}
    for point in points:
        by_epoch.setdefault(point.epoch, []).append(point)
    current: dict[int, tuple[float, ...]] = {}
    history: list[HistoryPoint] = []
    for epoch in sorted(by_epoch):
        for point in by_epoch[epoch]:
            current[point.preference_id] = point.losses
        value = front_hypervolume(list(current.values()), ref)
        wall = max(p.wall_time for p in by_epoch[epoch])
        history.append(HistoryPoint(epoch, float(wall), value if value is not None else 0.0))
    return history
