"""The Run page: header, view options, the live front, the solution, new preferences, actions."""

from __future__ import annotations

import streamlit as st

from frontend.lib import session
from frontend.lib.catalogue import learns_pareto_set, splits_of
from frontend.lib.formatting import when
from frontend.lib.live_store import poll, store_for
from frontend.lib.models import RunDetail
from frontend.lib.views.add_preferences import render_add_preferences
from frontend.lib.views.live_front import render_live
from frontend.lib.views.pareto_set_picker import render_pareto_set
from frontend.lib.views.run_parts import actions, view_options

__all__ = ["render"]


def _choose_run() -> None:
    st.title("Run")
    runs = session.try_api(lambda: session.client().all_runs(limit=500), "Could not list runs")
    if not runs:
        if runs is not None:
            st.info("No runs yet. Start one on the **New run** page.")
        return
    labels = {r.id: f"#{r.id} · {r.name} · {r.problem} · {r.method} · {r.status}" for r in runs}
    choice = st.selectbox("Open a run", list(labels), format_func=labels.__getitem__)
    if st.button("Open", type="primary"):
        st.query_params["run"] = str(choice)
        st.rerun()


def _header(run: RunDetail) -> None:
    """Title and what does not change; the status line is drawn by the live fragment."""
    st.title(f"Run #{run.id} · {run.name}")
    settings = ", ".join(f"{k}={v}" for k, v in run.hyperparameters.items()) or "defaults"
    st.caption(f"Hyperparameters: {settings} · created {when(run.created_at)} UTC")


def render() -> None:
    """Draw the page for ``?run=ID`` (or a run picker without one)."""
    flash = st.session_state.pop("run_detail.flash", None)
    if flash:
        st.success(flash)
    run_id = session.run_id_from_query()
    if run_id is None:
        _choose_run()
        return
    client = session.client()
    try:
        run = client.get_run(run_id)
        store = store_for(run.id, run.n_tasks)
        poll(client, store)
    except session.API_ERRORS as exc:
        st.title(f"Run #{run_id}")
        session.report(exc, f"Could not load run #{run_id}")
        st.page_link(session.page("runs"), label="Back to the runs", icon=":material/list:")
        return
    _header(run)
    actions(run)
    opts = view_options(run, store)
    render_live(run, opts)
    st.divider()
    if learns_pareto_set(run.method):
        render_pareto_set(run, has_test_split="test" in splits_of(run.problem))
        return
    render_add_preferences(run, store, opts.split, opts.selected)
