"""The Runs page: every run with its status, progress and hypervolume; open one."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from frontend.lib import session
from frontend.lib.formatting import when
from frontend.lib.models import TERMINAL, Run

__all__ = ["render", "runs_table"]


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run, the columns shown on the page."""
    rows = []
    for run in runs:
        p = run.progress
        rows.append(
            {
                "id": run.id,
                "name": run.name,
                "problem": run.problem,
                "method": run.method,
                "preferences": run.n_preferences,
                "status": run.status,
                "progress": p.jobs_finished / p.jobs_total if p.jobs_total else 0.0,
                "jobs done": f"{p.jobs_finished}/{p.jobs_total}"
                + (f" ({p.jobs_failed} failed)" if p.jobs_failed else ""),
                "epoch": f"{p.epoch}/{p.epochs}",
                "test HV": run.hypervolume,
                "owner": run.owner,
                "created (UTC)": when(run.created_at),
            }
        )
    columns = [
        "id",
        "name",
        "problem",
        "method",
        "preferences",
        "status",
        "progress",
        "jobs done",
        "epoch",
        "test HV",
        "owner",
        "created (UTC)",
    ]
    return pd.DataFrame(rows, columns=columns)


_COLUMNS = {
    "id": st.column_config.NumberColumn("id", width="small"),
    "progress": st.column_config.ProgressColumn(
        "progress", help="finished jobs / all jobs", min_value=0.0, max_value=1.0, format="percent"
    ),
    "test HV": st.column_config.NumberColumn(
        "test HV",
        help="latest hypervolume the API reports: test split (train for function problems), "
        "against the API's reference point for the run",
        format="%.4g",
    ),
}


def _table(runs: list[Run]) -> None:
    frame = runs_table(runs)
    event = st.dataframe(
        frame,
        hide_index=True,
        column_config=_COLUMNS,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key="runs.table",
    )
    rows = getattr(getattr(event, "selection", None), "rows", None) or []
    if rows:
        session.go_to("run_detail", run=int(frame.iloc[rows[0]]["id"]))


def _open_box(runs: list[Run]) -> None:
    labels = {run.id: f"#{run.id} · {run.name} · {run.problem} · {run.method}" for run in runs}
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    choice = left.selectbox(
        "Open a run", list(labels), format_func=labels.__getitem__, key="runs.open"
    )
    if right.button("Open", type="primary", width="stretch", key="runs.open_button"):
        session.go_to("run_detail", run=choice)


def render() -> None:
    """Draw the page; the table refreshes itself while any run is still active."""
    st.title("Runs")
    flash = st.session_state.pop("runs.flash", None)
    if flash:
        st.success(flash)
    st.page_link(session.page("new_run"), label="Start a new run", icon=":material/add_circle:")
    runs = session.try_api(lambda: session.client().all_runs(limit=500), "Could not list runs")
    if runs is None:
        return
    if not runs:
        st.info("No runs yet. Start one on the **New run** page.")
        return
    active = any(run.status not in TERMINAL for run in runs)
    period = session.settings().poll_seconds * 2 if active else None

    @st.fragment(run_every=period)
    def live_table() -> None:
        latest = session.try_api(lambda: session.client().all_runs(limit=500), "Refresh failed")
        shown = latest if latest is not None else runs
        st.caption(
            f"{len(shown)} run(s). Select a row to open it"
            + (" — refreshing while runs are active." if active else ".")
        )
        _table(shown)
        if active and latest is not None and all(r.status in TERMINAL for r in latest):
            st.rerun(scope="app")

    live_table()
    _open_box(runs)
