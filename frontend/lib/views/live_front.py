"""The live front of a run: one ``@st.fragment(run_every=…)`` that polls and redraws in place.

Each tick fetches ``metrics?after=SEQ`` (only new points), the run's jobs, and — when new points
arrived — the hypervolume history and the current front (non-dominated flags, downloadable
models). It then redraws the front, the hypervolume chart, the job progress and the solution
panel. When the run reaches a terminal state the fragment triggers one full rerun, which
rebuilds it with ``run_every=None``: polling stops.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import streamlit as st

from frontend.lib import charts, session
from frontend.lib.colours import preference_colours
from frontend.lib.front_data import (
    current_points,
    extent,
    ray_segments,
    trajectory_segments,
    value_columns,
)
from frontend.lib.live_store import MetricStore, poll, store_for
from frontend.lib.models import Front, HypervolumeHistory, RunDetail
from frontend.lib.views.run_parts import (
    ViewOptions,
    clicked_key,
    jobs_progress,
    preference_label,
    shown_status,
    status_line,
    waiting_text,
)
from frontend.lib.views.solution_panel import render_solution

__all__ = ["chart_key", "derived", "front_table", "new_click", "render_live"]


def derived(
    run: RunDetail, store: MetricStore, split: str
) -> tuple[Front | None, HypervolumeHistory | None]:
    """Front and hypervolume history of ``split``, refetched only when something changed.

    The history is fetched first and its reference point is passed to the front, so the
    headline hypervolume and the last point of the history agree.
    """
    cache_key = f"run.{run.id}.derived.{split}"
    stamp = (store.version, tuple((j.id, j.state, j.epoch) for j in run.jobs))
    cached = st.session_state.get(cache_key)
    if cached and cached[0] == stamp:
        return cached[1], cached[2]
    client = session.client()
    history = client.hypervolume(run.id, split)
    front = client.front(run.id, split, ref=history.reference_point)
    st.session_state[cache_key] = (stamp, front, history)
    return front, history


def front_table(
    run: RunDetail, store: MetricStore, split: str, view: str, front: Front | None
) -> pd.DataFrame:
    """Current point of every preference on ``split`` with ``x``/``y`` (2 tasks) and flags."""
    current = current_points(store.frame(), split)
    if current.empty:
        return current
    flags = {p.preference_id: p.non_dominated for p in (front.points if front else [])}
    status = {p.id: p.status for p in run.preferences}
    cols = value_columns(view, run.n_tasks)
    out = current.copy()
    for c in cols:
        if c not in out:
            out[c] = float("nan")
    if run.n_tasks >= 2:
        out["x"], out["y"] = out[cols[0]], out[cols[1]]
    out["non_dominated"] = out["preference_id"].map(flags).fillna(False).astype(bool)
    out["status"] = out["preference_id"].map(status).fillna("?")
    return out


def _axis(run: RunDetail, view: str, i: int) -> str:
    name = run.task_names[i] if i < len(run.task_names) else f"task {i + 1}"
    return f"{view} of {name}"


def _front_2d(run: RunDetail, store: MetricStore, opts: ViewOptions, table: pd.DataFrame) -> Any:
    xcol, ycol = value_columns(opts.view, 2)
    prefs = {p.id: p for p in run.preferences}
    vectors = {pid: p.vector for pid, p in prefs.items()}
    labels = {pid: preference_label(p) for pid, p in prefs.items()}
    segments = (
        trajectory_segments(store.frame(), opts.split, xcol, ycol) if opts.trajectories else None
    )
    x_domain = y_domain = None
    rays = None
    if opts.view == "loss":
        xs = list(table["x"]) + ([] if segments is None else list(segments["x"]))
        ys = list(table["y"]) + ([] if segments is None else list(segments["y"]))
        x_domain, y_domain = (0.0, extent(xs)), (0.0, extent(ys))
        if opts.rays:
            rays = ray_segments(vectors, x_domain[1], y_domain[1])
    chart = charts.front_chart(
        table,
        labels=labels,
        colours=preference_colours(vectors),
        x_title=_axis(run, opts.view, 0),
        y_title=_axis(run, opts.view, 1),
        x_domain=x_domain,
        y_domain=y_domain,
        segments=segments,
        rays=rays,
        highlight_front=opts.highlight,
        selected=opts.selected,
        tooltip=[c for c in ("l0", "l1") if opts.view != "loss"],
    )
    return st.altair_chart(
        chart, on_select="rerun", selection_mode=charts.PICK, key=chart_key(run.id)
    )


def _front_nd(run: RunDetail, opts: ViewOptions, table: pd.DataFrame) -> None:
    cols = value_columns(opts.view, run.n_tasks)
    titles = {c: _axis(run, opts.view, i) for i, c in enumerate(cols)}
    prefs = {p.id: p for p in run.preferences}
    data = table.copy()
    data["preference"] = data["preference_id"].map(lambda pid: preference_label(prefs[pid]))
    colours = preference_colours({pid: p.vector for pid, p in prefs.items()})
    by_label = {preference_label(prefs[pid]): c for pid, c in colours.items()}
    st.altair_chart(
        charts.scatter_matrix(
            data, cols, colour_field="preference", colours=by_label, titles=titles, size=140
        )
    )
    st.altair_chart(
        charts.parallel_coordinates(
            data, cols, colour_field="preference", colours=by_label, titles=titles
        ),
        width="stretch",
    )


def chart_key(run_id: int) -> str:
    """Widget key of the run's front chart (its selection is the clicked point)."""
    return f"run.{run_id}.front"


def new_click(run_id: int) -> int | None:
    """The preference id of a point clicked since the last check, read from the chart's
    selection state before anything is fetched (so the answer to a click is immediate)."""
    event = st.session_state.get(chart_key(run_id))
    selection = getattr(event, "selection", None)
    if selection is None and isinstance(event, dict):
        selection = event.get("selection")
    points = (selection.get(charts.PICK) or []) if isinstance(selection, dict) else []
    picked = points[0].get("preference_id") if points and isinstance(points[0], dict) else None
    seen_key = f"run.{run_id}.last_click"
    if picked == st.session_state.get(seen_key):
        return None
    st.session_state[seen_key] = picked
    return None if picked is None else int(picked)


def _hypervolume(history: HypervolumeHistory | None, front: Front | None, split: str) -> None:
    st.markdown(f"**Hypervolume ({split})**")
    if front is not None and front.hypervolume is not None:
        st.metric("current hypervolume", f"{front.hypervolume:.5g}")
    if history is None or not history.points:
        st.caption("No hypervolume yet.")
        return
    data = pd.DataFrame([p.model_dump() for p in history.points])
    st.altair_chart(charts.hypervolume_chart(data), width="stretch")
    if history.reference_point:
        ref = ", ".join(f"{v:.3g}" for v in history.reference_point)
        st.caption(f"Reference point ({ref}) in loss space.")


def _empty_message(run: RunDetail) -> str:
    """What the chart area says before the first point, by the run's state."""
    status = shown_status(run)
    if status == "cancelled":
        return "The run was cancelled before any model finished an epoch: there is no front."
    if status == "failed":
        return "The run failed before any model finished an epoch: see the jobs below."
    if status == "queued":
        return f"Queued, {waiting_text(run)}: the front appears here once the first epoch ends."
    return "Training: the front appears here as soon as the first epoch ends."


def _live(run_id: int, opts: ViewOptions, polling: bool) -> None:
    client = session.client()
    run: RunDetail | None = st.session_state.get(f"run.{run_id}.detail")
    store = store_for(run_id, run.n_tasks if run else 2)
    clicked = new_click(run_id)
    if clicked is None or run is None:  # a click is answered from what is already here
        try:
            poll(client, store)
            run = client.get_run(run_id)
            st.session_state[f"run.{run_id}.detail"] = run
        except session.API_ERRORS as exc:
            session.report(exc, "Live update failed (retrying)")
    if run is None:
        return
    if clicked is not None:
        st.session_state[clicked_key(run_id)] = clicked
    if polling and (store.finished or tuple(store.splits()) != opts.splits_known):
        st.rerun(scope="app")  # rebuild the controls / stop polling
    st.markdown(status_line(run, store))
    split = opts.split if opts.split in store.splits() else (store.splits() or [opts.split])[0]
    front = history = None
    try:
        front, history = derived(run, store, split)
    except session.API_ERRORS as exc:
        session.report(exc, "Could not load the front")
    table = front_table(run, store, split, opts.view, front)
    # The layout, top to bottom; the solution panel is filled first, so that the answer to a
    # click reaches the browser before the charts are redrawn.
    top = st.container()
    left, right = st.columns([2.2, 1])
    jobs_slot, panel_slot = st.container(), st.container()
    selected = st.session_state.get(clicked_key(run_id), opts.selected)
    if selected is not None:
        with panel_slot:
            render_solution(run, store, selected, front)
    state = f"polling every {session.settings().poll_seconds:g} s" if polling else "not polling"
    top.caption(
        f"{len(store.points)} metric points (last seq {store.last_seq}) · run {run.status} · "
        f"{state} · updated {time.strftime('%H:%M:%S')}"
        + (
            f" · showing {split}: the problem reports no {opts.split} split"
            if split != opts.split
            else ""
        )
    )
    with left:
        if table.empty:
            st.info(_empty_message(run))
        elif run.n_tasks == 2:
            _front_2d(run, store, opts, table)
            if opts.view != "loss":
                st.caption("Rays are directions in loss space; they are drawn in the loss view.")
        else:
            _front_nd(run, opts, table)
    with right:
        _hypervolume(history, front, split)
    with jobs_slot:
        jobs_progress(run, store)
    if clicked is not None:
        st.rerun(scope="app")  # the panel is shown; now let the rest of the page follow


def render_live(run: RunDetail, opts: ViewOptions) -> None:
    """Draw the live section; it polls every ``poll_seconds`` until the run is over."""
    store = store_for(run.id, run.n_tasks)
    st.session_state[f"run.{run.id}.detail"] = run
    polling = not store.finished
    period = session.settings().poll_seconds if polling else None
    st.fragment(run_every=period)(_live)(run.id, opts, polling)
