"""Fronts and hypervolume from stored metric points (pure functions, no database).

Reference point of the hypervolume: the one the client passes (``?ref=``), else the rule of
:func:`pmtl_core.indicators.reference_point` (the problem's own, ``(2.0, …, 2.0)`` for data
sets, else just beyond the worst losses considered).

:class:`RunSeries` keeps one run's fronts and hypervolume histories up to date incrementally:
metric points are append-only and, per run, ``seq`` order is commit order, so a poller feeds it
only the points with ``seq`` above the last one it saw; :class:`SeriesCache` shares them between
requests of one API process (bounded, least recently used first out).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pmtl_core.indicators import (
    DATASET_REFERENCE,
    hypervolume,
    non_dominated,
    reference_point,
    spread,
)

__all__ = [
    "DATASET_REFERENCE",
    "HistoryPoint",
    "LatestPoint",
    "RunSeries",
    "SeriesCache",
    "SeriesPoint",
    "default_reference",
    "front_hypervolume",
    "front_spread",
    "hypervolume_history",
    "is_finite_row",
    "latest_points",
    "non_dominated_flags",
    "parse_reference",
]


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
    """The reference point when the client gives none: the library's rule,
    :func:`pmtl_core.indicators.reference_point` (one rule for the API, the UI and the CLI)."""
    return reference_point(kind, n_tasks, declared, list(losses))


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


def front_spread(losses: Sequence[Sequence[float]], flags: Sequence[bool]) -> float | None:
    """Deb's spread of the non-dominated rows (:func:`pmtl_core.indicators.spread`, without
    the true front's extremes): 0 means evenly spaced; None below three such rows."""
    rows = [list(row) for row, keep in zip(losses, flags, strict=True) if keep]
    if len(rows) < 3:
        return None
    value = spread(rows)
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


@dataclass(frozen=True)
class SeriesPoint:
    """One stored metric point as the run series keeps it (``seq`` is its row's sequence)."""

    seq: int
    preference_id: int
    epoch: int
    split: str
    losses: tuple[float | None, ...]
    metrics: dict[str, Any]
    wall_time: float


@dataclass
class _Split:
    """Everything one split of a run has seen: latest points, losses by epoch, history state."""

    max_seq: int = 0
    latest: dict[int, SeriesPoint] = field(default_factory=dict)
    by_epoch: dict[int, dict[int, tuple[float | None, ...]]] = field(default_factory=dict)
    wall: dict[int, float] = field(default_factory=dict)
    worst: list[float] | None = None
    # Hypervolume history for ``ref``; ``before_last`` is the front state before its last epoch,
    # so points landing in the last epoch or later only recompute from there.
    ref: tuple[float, ...] | None = None
    history: list[HistoryPoint] = field(default_factory=list)
    before_last: dict[int, tuple[float | None, ...]] = field(default_factory=dict)
    dirty_from: int | None = None


class RunSeries:
    """One run's points, folded in incrementally: the latest point of every preference per
    split, and the hypervolume history per split (recomputed only from the first epoch that
    received new points). Thread-safe; ``last_seq`` is the newest ``seq`` folded in."""

    def __init__(self, encode: Callable[[SeriesPoint], bytes] | None = None) -> None:
        self.lock = threading.Lock()
        # Held by the one request bringing the series up to date, so that a hundred pollers
        # arriving at once run one catch-up query, not a hundred.
        self.refresh_lock = threading.Lock()
        self.last_seq = 0
        self._splits: dict[str, _Split] = {}
        # Every point in seq order, and its encoding (``encode``, e.g. JSON) made once.
        self._encode = encode
        self._seqs: list[int] = []
        self._encoded: list[bytes] = []

    def __len__(self) -> int:
        """Number of points folded in."""
        return len(self._seqs)

    def page(self, after: int, limit: int) -> tuple[list[bytes], int, bool]:
        """Encoded points with ``seq > after`` in seq order, at most ``limit`` of them; the
        seq of the last one (``after`` if none) and whether more follow (as ``?after=``)."""
        start = bisect.bisect_right(self._seqs, after)
        stop = min(start + limit, len(self._seqs))
        last = self._seqs[stop - 1] if stop > start else after
        return self._encoded[start:stop], last, stop < len(self._seqs)

    def _split(self, split: str) -> _Split:
        return self._splits.setdefault(split, _Split())

    def add(self, points: Iterable[SeriesPoint]) -> None:
        """Fold in new points (``seq`` above :attr:`last_seq`); older ones are skipped."""
        for point in points:
            if point.seq <= self.last_seq or (self._seqs and point.seq <= self._seqs[-1]):
                continue
            self._seqs.append(point.seq)
            self._encoded.append(self._encode(point) if self._encode is not None else b"")
            s = self._split(point.split)
            s.max_seq = max(s.max_seq, point.seq)
            seen = s.latest.get(point.preference_id)
            if seen is None or point.epoch > seen.epoch:
                s.latest[point.preference_id] = point
            s.by_epoch.setdefault(point.epoch, {})[point.preference_id] = point.losses
            s.wall[point.epoch] = max(s.wall.get(point.epoch, point.wall_time), point.wall_time)
            if is_finite_row(point.losses):
                row = [float(x) for x in point.losses]  # type: ignore[arg-type]
                if s.worst is None or len(s.worst) != len(row):
                    s.worst = row
                else:
                    s.worst = [max(a, b) for a, b in zip(s.worst, row, strict=True)]
            if s.dirty_from is None or point.epoch < s.dirty_from:
                s.dirty_from = point.epoch
        self.last_seq = max([self.last_seq, *(s.max_seq for s in self._splits.values())], default=0)

    def split_seq(self, split: str) -> int:
        """The newest ``seq`` of ``split`` (0 before its first point): the front's version."""
        s = self._splits.get(split)
        return s.max_seq if s is not None else 0

    def latest(self, split: str) -> dict[int, SeriesPoint]:
        """The newest point (highest epoch) of every preference on ``split``."""
        s = self._splits.get(split)
        return dict(s.latest) if s is not None else {}

    def worst(self, split: str) -> list[float] | None:
        """Component-wise maximum of every finite loss row of ``split`` (None before one)."""
        s = self._splits.get(split)
        return list(s.worst) if s is not None and s.worst is not None else None

    def history(self, split: str, ref: Sequence[float] | None) -> list[HistoryPoint]:
        """Hypervolume after every epoch of ``split`` against ``ref`` (as
        :func:`hypervolume_history`), recomputing only what new points changed."""
        if ref is None:
            return []
        s = self._splits.get(split)
        if s is None:
            return []
        key = tuple(float(v) for v in ref)
        if key != s.ref:
            s.ref, s.history, s.before_last, s.dirty_from = key, [], {}, min(s.by_epoch, default=0)
        if s.dirty_from is None:
            return list(s.history)
        if s.history and s.dirty_from >= s.history[-1].epoch:
            start = s.history[-1].epoch  # resume from the state before the last epoch
            kept, current = s.history[:-1], dict(s.before_last)
        else:
            start, kept, current = min(s.by_epoch), [], {}
        history = list(kept)
        before_last = dict(current)
        for epoch in sorted(e for e in s.by_epoch if e >= start):
            before_last = dict(current)
            current.update(s.by_epoch[epoch])
            value = front_hypervolume(list(current.values()), key)
            history.append(HistoryPoint(epoch, float(s.wall[epoch]), value or 0.0))
        s.history, s.before_last, s.dirty_from = history, before_last, None
        return list(history)


class SeriesCache:
    """Run series of one process keyed by ``(run id, run creation time)`` (ids of deleted runs
    can come back on SQLite): at most ``capacity`` runs and about ``max_points`` points in all,
    least recently used runs evicted first."""

    def __init__(
        self,
        capacity: int = 128,
        max_points: int = 1_000_000,
        encode: Callable[[SeriesPoint], bytes] | None = None,
    ) -> None:
        self.capacity = capacity
        self.max_points = max_points
        self._encode = encode
        self._lock = threading.Lock()
        self._series: OrderedDict[tuple[int, str], RunSeries] = OrderedDict()

    def get(self, run_id: int, created: object) -> RunSeries:
        """The series of a run (a new, empty one the first time)."""
        key = (run_id, str(created))
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = RunSeries(self._encode)
            else:
                self._series.move_to_end(key)
            total = sum(len(s) for s in self._series.values())
            while len(self._series) > 1 and (
                len(self._series) > self.capacity or total > self.max_points
            ):
                _, evicted = self._series.popitem(last=False)
                total -= len(evicted)
            return series
