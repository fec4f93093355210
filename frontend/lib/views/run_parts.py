"""Pieces of the Run page that do not poll: view options, job progress, cancel and delete."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from frontend.lib import catalogue, session
from frontend.lib.colours import angle_degrees
from frontend.lib.formatting import duration, status_badge, vector
from frontend.lib.live_store import MetricStore
from frontend.lib.live_text import current_in_epoch, in_epoch_text, ordinal, queue_text
from frontend.lib.models import TERMINAL, Job, Preference, RunDetail

#: What a queued job is waiting for when the API gives no queue place (e.g. being cancelled).
WAITING = "waiting for a free worker slot"

__all__ = [
    "WAITING",
    "ViewOptions",
    "actions",
    "clicked_key",
    "epoch_reached",
    "favours",
    "jobs_progress",
    "preference_label",
    "selection_key",
    "shown_status",
    "status_line",
    "view_options",
    "waiting_text",
]


@dataclass(frozen=True)
class ViewOptions:
    """What the live front shows."""

    split: str
    view: str
    rays: bool
    trajectories: bool
    highlight: bool
    selected: int | None
    splits_known: tuple[str, ...]


def selection_key(run_id: int) -> str:
    """Session-state key of the chosen solution (preference id) of a run."""
    return f"run.{run_id}.selected"


def clicked_key(run_id: int) -> str:
    """Session-state key of a point clicked on the chart, not yet shown in the Solution box."""
    return f"run.{run_id}.clicked"


def preference_label(pref: Preference) -> str:
    """``#20 (0.92, 0.38)``: the preference's id (the number the API, the CLI and the file
    names use) and its direction."""
    return f"#{pref.id} {vector(pref.vector, 2)}"


def epoch_reached(run: RunDetail, store: MetricStore) -> int:
    """The epoch every active model has reached, read from the metric points the chart draws.

    The lowest newest epoch over the run's models that are still training or finished (a
    model without points counts 0); failed and cancelled models do not hold it back.
    """
    frame = store.frame()
    latest = {} if frame.empty else frame.groupby("preference_id")["epoch"].max().to_dict()
    active = [p for p in run.preferences if p.status not in ("failed", "cancelled")]
    epochs = [int(latest.get(p.id, 0)) for p in active or run.preferences]
    return min(epochs) if epochs else 0


def shown_status(run: RunDetail) -> str:
    """The run's status, ``running`` as soon as one of its jobs runs."""
    if run.status == "queued" and any(j.state == "running" for j in run.jobs):
        return "running"
    return run.status


def waiting_text(run: RunDetail) -> str:
    """What a queued run waits for: its place in line when the API gives it."""
    return queue_text(run.queue) if run.queue else WAITING


def status_line(run: RunDetail, store: MetricStore) -> str:
    """The header line under the title, from the same run and points the chart uses.

    While a job runs it says where the slowest one is inside the epoch after the one the
    chart reached; a queued run says its place in the queue and what it waits behind.
    """
    p = run.progress
    status = shown_status(run)
    waiting = ""
    if status == "queued":
        waiting = f" ({waiting_text(run)})"
    reached = epoch_reached(run, store)
    live = current_in_epoch(p.in_epoch, reached) if status == "running" else None
    now = f" · {in_epoch_text(live)}" if live is not None else ""
    return (
        f"**{run.problem}** with **{run.method}** · {status_badge(status)}{waiting} · "
        f"{run.n_preferences} preference vectors · jobs {p.jobs_finished}/{p.jobs_total} done · "
        f"epoch {reached}/{p.epochs}{now} · seed {run.seed}"
    )


def favours(pref_vector: list[float], task_names: list[str]) -> str:
    """Which task a direction favours (the one whose loss the ray keeps lowest)."""
    if len({round(v, 6) for v in pref_vector}) == 1:
        return "balanced between all tasks"
    low = min(range(len(pref_vector)), key=lambda i: pref_vector[i])
    if len(pref_vector) == 2:
        return f"favours {task_names[low]} (ray at {angle_degrees(pref_vector):.1f}°)"
    return f"favours {task_names[low]} most"


def view_options(run: RunDetail, store: MetricStore) -> ViewOptions:
    """The controls above the front; returns the chosen options."""
    allowed = catalogue.splits_of(run.problem)
    splits = [s for s in allowed if s in store.splits()] or allowed
    views = ["loss", *store.metric_names()]
    prefs = sorted(run.preferences, key=lambda p: p.index)
    labels = {p.id: preference_label(p) for p in prefs}
    key = selection_key(run.id)
    clicked = st.session_state.pop(clicked_key(run.id), None)
    if clicked in labels:
        st.session_state[key] = clicked
    if st.session_state.get(key) not in (None, *labels):
        st.session_state[key] = None
    cols = st.columns([1.1, 1.4, 0.8, 1.0, 1.1, 2.2], vertical_alignment="center")
    split = cols[0].radio("Split", splits, horizontal=True, key=f"run.{run.id}.split")
    view = cols[1].radio(
        "Values", views, horizontal=True, key=f"run.{run.id}.view", help="loss or a metric"
    )
    rays = cols[2].toggle("Rays", value=True, key=f"run.{run.id}.rays")
    traj = cols[3].toggle("Trajectories", value=True, key=f"run.{run.id}.traj")
    highlight = cols[4].toggle(
        "Front", value=True, key=f"run.{run.id}.nd", help="highlight the non-dominated set"
    )
    selected = cols[5].selectbox(
        "Solution",
        [None, *labels],
        format_func=lambda pid: "— click a point or choose —" if pid is None else labels[pid],
        key=key,
        on_change=lambda: st.session_state.pop(clicked_key(run.id), None),
    )
    return ViewOptions(
        split=split,
        view=view,
        rays=rays,
        trajectories=traj,
        highlight=highlight,
        selected=selected,
        splits_known=tuple(store.splits()),
    )


def _job_epoch(job: Job, latest: dict[int, int]) -> int:
    """The epoch a job's models reached, from the chart's points (the job row may lag)."""
    seen = [latest.get(p, 0) for p in job.preference_ids]
    return max(job.epoch, min(seen)) if seen else job.epoch


def _job_line(job: Job, epoch: int) -> str:
    prefs = ", ".join(f"#{p}" for p in job.preference_ids)
    where = f" on **{job.device}** ({job.worker})" if job.device else ""
    attempts = f", attempt {job.attempts}/{job.max_attempts}" if job.attempts > 1 else ""
    took = ""
    if job.started_at and job.finished_at:
        took = f", {duration((job.finished_at - job.started_at).total_seconds())}"
    return (
        f"Job {job.id} — {status_badge(job.state)}{where}, epoch {epoch}/{job.epochs}"
        f"{attempts}{took} · preferences {prefs}"
    )


def jobs_progress(run: RunDetail, store: MetricStore | None = None) -> None:
    """A progress bar per job: queued, running on which device, finished, or failed and why."""
    frame = store.frame() if store is not None else None
    latest: dict[int, int] = {}
    if frame is not None and not frame.empty:
        latest = {int(k): int(v) for k, v in frame.groupby("preference_id")["epoch"].max().items()}
    for job in sorted(run.jobs, key=lambda j: j.id):
        epoch = _job_epoch(job, latest)
        live = current_in_epoch(job.progress, epoch) if job.state == "running" else None
        done = epoch + (live.fraction if live is not None else 0.0)
        fraction = done / job.epochs if job.epochs else 0.0
        if job.state == "finished":
            fraction = 1.0
        line = _job_line(job, epoch)
        if live is not None:
            line += f" · {in_epoch_text(live)}"
        if job.state == "queued":
            place = job.queue_position
            line += f" — {ordinal(place)} in line" if place else f" — {WAITING}"
        st.progress(min(1.0, max(0.0, fraction)), text=line)
        if job.state == "failed":
            st.error(f"Job {job.id} failed: {job.error or 'no reason given'}")
        elif job.error and job.state != "finished":
            st.warning(f"Job {job.id}, last attempt: {job.error}")
    diverged = [p for p in run.preferences if p.diverged]
    if diverged:
        names = ", ".join(preference_label(p) for p in diverged)
        st.warning(f"Diverged (non-finite loss, frozen): {names}")


def _delete(run_id: int, confirm_key: str) -> None:
    try:
        session.client().delete_run(run_id)
    except session.API_ERRORS as exc:
        session.report(exc, "Delete failed")
        return
    st.session_state.pop(confirm_key, None)
    st.session_state["runs.flash"] = f"Run #{run_id} deleted."
    session.go_to("runs")


def actions(run: RunDetail) -> None:
    """Cancel the run, or delete it after a confirmation."""
    confirm_key = f"run.{run.id}.confirm_delete"
    left, right, _ = st.columns([1, 1, 4])
    if left.button(
        "Cancel run",
        icon=":material/stop_circle:",
        disabled=run.status in TERMINAL,
        key=f"run.{run.id}.cancel",
    ) and session.try_api(lambda: session.client().cancel_run(run.id), "Cancel failed"):
        st.toast(f"Run #{run.id}: cancellation requested")
        st.rerun()
    if right.button("Delete run…", icon=":material/delete:", key=f"run.{run.id}.delete"):
        st.session_state[confirm_key] = True
    if not st.session_state.get(confirm_key):
        return
    st.warning(
        f"Delete run #{run.id} “{run.name}” with its {run.n_preferences} models, metrics and "
        "files? This cannot be undone."
    )
    yes, no, _ = st.columns([1, 1, 4])
    if yes.button("Yes, delete", type="primary", key=f"run.{run.id}.delete_yes"):
        _delete(run.id, confirm_key)
    if no.button("Keep it", key=f"run.{run.id}.delete_no"):
        st.session_state.pop(confirm_key, None)
        st.rerun()
