"""The Runs page: every run with its status, progress and hypervolume; open one."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from frontend.lib import session
from frontend.lib.live_text import about, current_in_epoch, ordinal
from frontend.lib.models import TERMINAL, Run

__all__ = ["now_text", "progress_fraction", "render", "runs_table"]


def progress_fraction(run: Run) -> float:
    """Share of the training done: finished (or failed) jobs count whole, the others by the
    epoch they reached plus the share of the next epoch the slowest running job has done, so
    a run at epoch 5/30 is not shown at 0 % and a long epoch moves the bar."""
    p = run.progress
    if not p.jobs_total:
        return 0.0
    done = p.jobs_finished + p.jobs_failed
    live = current_in_epoch(p.in_epoch, p.epoch)
    epoch = p.epoch + (live.fraction if live is not None else 0.0)
    partial = (p.jobs_total - done) * (epoch / p.epochs if p.epochs else 0.0)
    return min(1.0, (done + partial) / p.jobs_total)


def now_text(run: Run) -> str:
    """What the run is doing now, short enough for a table cell: where its slowest running job
    is inside the next epoch (``step 120/469 · ~2 min left``), or its queue place (``2nd in
    line``); empty once it is over (no stale promise). The run page says it in full."""
    if run.status in TERMINAL:
        return ""
    live = current_in_epoch(run.progress.in_epoch, run.progress.epoch)
    if live is not None:
        text = f"{live.unit} {live.batch}/{live.batches}"
        left = live.seconds_left
        return text + (f" · {about(left)} left" if left is not None else "")
    if run.queue is not None and not run.progress.jobs_running:
        place = run.queue.position
        return "next in line" if place == 1 else f"{ordinal(place)} in line"
    return ""


def epoch_text(run: Run) -> str:
    """``epoch reached/epochs · jobs done/total``, the jobs giving way to :func:`now_text`
    while the run trains or waits (one column, so the table fits a laptop screen)."""
    p = run.progress
    failed = f", {p.jobs_failed} failed" if p.jobs_failed else ""
    now = now_text(run)
    return f"{p.epoch}/{p.epochs} · " + (now or f"{p.jobs_finished}/{p.jobs_total}{failed}")


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run, the columns shown on the page (owner only when runs have several)."""
    owners = {run.owner for run in runs}
    rows = [
        {
            "id": run.id,
            "name": run.name,
            "problem": run.problem,
            "method": run.method,
            "prefs": run.n_preferences,
            "status": run.status,
            "progress": progress_fraction(run),
            "epoch · jobs": epoch_text(run),
            "HV": run.hypervolume,
            "owner": run.owner,
        }
        for run in runs
    ]
    columns = [
        "id",
        "name",
        "problem",
        "method",
        "prefs",
        "status",
        "progress",
        "epoch · jobs",
        "HV",
        *(["owner"] if len(owners) > 1 else []),
    ]
    return pd.DataFrame(rows, columns=columns)


_COLUMNS = {
    "id": st.column_config.NumberColumn("id", width=40),
    "name": st.column_config.TextColumn("name", width="medium"),
    "prefs": st.column_config.NumberColumn("prefs", help="preference vectors (models)", width=50),
    "status": st.column_config.TextColumn("status", width=80),
    "progress": st.column_config.ProgressColumn(
        "progress",
        help="training done: finished jobs, plus the epochs reached by the others",
        min_value=0.0,
        max_value=1.0,
        format="percent",
        width=90,
    ),
    "epoch · jobs": st.column_config.TextColumn(
        "epoch · jobs",
        help="epoch reached by the slowest unfinished job · jobs done; while a job trains, where "
        "it is inside the next epoch and the time left in it; while the run is queued, its "
        "place in the queue (the run page says what it waits behind)",
        width="medium",
    ),
    "HV": st.column_config.NumberColumn(
        "HV",
        help="latest hypervolume the API reports: test split (train for function problems), "
        "against the problem's reference point, as on the run page",
        format="%.4g",
        width=70,
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
