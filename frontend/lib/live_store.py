"""Incremental polling of a run's metric points (``GET /runs/{id}/metrics?after=SEQ``).

A :class:`MetricStore` per run lives in session state. Each poll asks only for points newer
than ``last_seq`` and appends them; metric points are append-only on the server, so nothing
that was fetched is ever fetched again. ``version`` changes whenever new points arrive, which
is what derived data (fronts, hypervolume history) is cached on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

from frontend.lib.api_client import ApiClient
from frontend.lib.front_data import metric_frame
from frontend.lib.models import TERMINAL, MetricPoint

__all__ = ["MetricStore", "poll", "store_for"]


@dataclass
class MetricStore:
    """Everything fetched so far for one run."""

    run_id: int
    n_tasks: int
    last_seq: int = 0
    status: str | None = None
    points: list[MetricPoint] = field(default_factory=list)
    version: int = 0
    polls: int = 0
    _frame: pd.DataFrame | None = field(default=None, repr=False)
    _frame_version: int = -1

    @property
    def finished(self) -> bool:
        """Whether the run has reached a terminal state (nothing more will arrive)."""
        return self.status in TERMINAL

    def add(self, points: list[MetricPoint], last_seq: int, status: str) -> int:
        """Append a page of points; return how many were new."""
        fresh = [p for p in points if p.seq > self.last_seq]
        self.points.extend(fresh)
        self.last_seq = max(self.last_seq, last_seq)
        self.status = status
        if fresh:
            self.version += 1
        return len(fresh)

    def frame(self) -> pd.DataFrame:
        """All points as a DataFrame (rebuilt only after new points arrived)."""
        if self._frame is None or self._frame_version != self.version:
            self._frame = metric_frame(self.points, self.n_tasks)
            self._frame_version = self.version
        return self._frame

    def splits(self) -> list[str]:
        """Splits that have points, ``test`` first."""
        seen = {p.split for p in self.points}
        return [s for s in ("test", "train") if s in seen]

    def metric_names(self) -> list[str]:
        """Names of the per-task metrics reported (e.g. ``accuracy``)."""
        names: dict[str, None] = {}
        for p in self.points[-200:]:
            names.update(dict.fromkeys(p.metrics))
        return list(names)


def store_for(run_id: int, n_tasks: int) -> MetricStore:
    """The session's store of ``run_id`` (created empty on first use)."""
    key = f"run.{run_id}.store"
    store = st.session_state.get(key)
    if not isinstance(store, MetricStore) or store.n_tasks != n_tasks:
        store = MetricStore(run_id=run_id, n_tasks=n_tasks)
        st.session_state[key] = store
    return store


def poll(client: ApiClient, store: MetricStore, max_pages: int = 20) -> int:
    """Fetch the points newer than ``store.last_seq`` (up to ``max_pages`` pages); count new."""
    new = 0
    for _ in range(max_pages):
        page = client.metrics(store.run_id, after=store.last_seq)
        new += store.add(page.points, page.last_seq, page.run_status)
        if not page.has_more:
            break
    store.polls += 1
    return new
