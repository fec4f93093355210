"""“Add preference vectors here”: around the chosen solution, in a gap of the front, or anew.

New vectors are previewed with the run's existing rays and sent to
``POST /runs/{id}/preferences``; the server warm-starts them from finished neighbours.
"""

from __future__ import annotations

import streamlit as st

from frontend.lib import preferences, session
from frontend.lib.colours import angle_degrees
from frontend.lib.front_data import current_points, neighbour_gaps, value_columns
from frontend.lib.live_store import MetricStore
from frontend.lib.models import RunDetail
from frontend.lib.views.preference_input import choose_preferences, preview
from frontend.lib.views.run_parts import preference_label

__all__ = ["gap_options", "new_vectors", "render_add_preferences"]

MODES = ("Around the chosen solution", "Between two neighbouring solutions", "Choose anew")


def gap_options(run: RunDetail, store: MetricStore, split: str) -> list[tuple[int, int, float]]:
    """(left id, right id, gap) of angularly neighbouring 2-task solutions, widest first."""
    current = current_points(store.frame(), split)
    if current.empty:
        return []
    vectors = {p.id: p.vector for p in run.preferences}
    current = current[current["preference_id"].isin(list(vectors))].copy()
    current["angle"] = current["preference_id"].map(lambda pid: angle_degrees(vectors[pid]))
    x, y = value_columns("loss", 2)
    gaps = neighbour_gaps(current, x, y)
    return [(int(r.left), int(r.right), float(r.gap)) for r in gaps.itertuples()]


def _version(run_id: int) -> int:
    """The section's form version: bumped after a submission, so every widget starts fresh."""
    return int(st.session_state.get(f"run.{run_id}.add_version", 0))


def new_vectors(
    vectors: list[list[float]], existing: list[list[float]], tol: float = 1e-6
) -> tuple[list[list[float]], int]:
    """``vectors`` without those the run already has (same direction); and how many left."""
    fresh = [
        v
        for v in vectors
        if not any(max(abs(a - b) for a, b in zip(v, e, strict=False)) < tol for e in existing)
    ]
    return fresh, len(vectors) - len(fresh)


def _around(run: RunDetail, selected: int | None) -> list[list[float]]:
    prefs = {p.id: p for p in run.preferences}
    if selected is None or selected not in prefs:
        st.info("Choose a solution first: click a point of the front or use the Solution box.")
        return []
    count = st.number_input("How many", 1, 8, 2, key=f"run.{run.id}.add_near_n.{_version(run.id)}")
    others = [p.vector for pid, p in prefs.items() if pid != selected]
    vectors = preferences.near(prefs[selected].vector, others, n=int(count))
    st.caption(
        f"Half-way between {preference_label(prefs[selected])} and its nearest neighbouring rays."
    )
    return vectors


def _between(run: RunDetail, store: MetricStore, split: str) -> list[list[float]]:
    prefs = {p.id: p for p in run.preferences}
    if run.n_tasks == 2:
        gaps = gap_options(run, store, split)
        if not gaps:
            st.info("Needs at least two solutions with metrics on the front.")
            return []
        labels = {
            (a, b): f"{preference_label(prefs[a])} ↔ {preference_label(prefs[b])} (gap {g:.3g})"
            for a, b, g in gaps
        }
        choice = st.selectbox(
            "Gap (widest first, from the current front)",
            list(labels),
            format_func=labels.__getitem__,
            key=f"run.{run.id}.add_gap.{_version(run.id)}",
        )
        left, right = choice
    else:
        pair = st.multiselect(
            "Two solutions",
            list(prefs),
            format_func=lambda pid: preference_label(prefs[pid]),
            max_selections=2,
            key=f"run.{run.id}.add_pair.{_version(run.id)}",
        )
        if len(pair) != 2:
            st.caption("Choose two solutions.")
            return []
        left, right = pair
    count = st.number_input(
        "Rays in between", 1, 16, 1, key=f"run.{run.id}.add_between_n.{_version(run.id)}"
    )
    return preferences.between(prefs[left].vector, prefs[right].vector, int(count))


def render_add_preferences(
    run: RunDetail, store: MetricStore, split: str, selected: int | None
) -> None:
    """Draw the section and submit the new vectors."""
    st.subheader("Add preference vectors here")
    if run.status == "cancelled":
        st.caption("This run was cancelled; it takes no new preference vectors.")
        return
    existing = [p.vector for p in run.preferences]
    version = _version(run.id)
    mode = st.radio("From", MODES, horizontal=True, key=f"run.{run.id}.add_mode.{version}")
    errors: list[str] = []
    if mode == MODES[0]:
        vectors = _around(run, selected)
    elif mode == MODES[1]:
        vectors = _between(run, store, split)
    else:
        vectors, errors = choose_preferences(
            f"run.{run.id}.add.{version}", run.task_names, default_count=3, existing=existing
        )
    vectors, repeated = new_vectors(vectors, existing)
    if repeated:
        st.caption(f"{repeated} of these directions the run already has: left out.")
    if mode != MODES[2] and vectors:
        preview(vectors, run.task_names, existing=existing)
    label = f"Add {len(vectors)} preference vector{'s' if len(vectors) != 1 else ''}"
    clicked = st.button(
        label,
        icon=":material/add:",
        disabled=not vectors or bool(errors),
        key=f"run.{run.id}.add_submit",
    )
    if clicked:
        updated = session.try_api(
            lambda: session.client().add_preferences(run.id, vectors), "Could not add them"
        )
        if updated is not None:
            added = sorted(
                p.id for p in updated.preferences if p.id not in {q.id for q in run.preferences}
            )
            st.session_state[f"run.{run.id}.add_version"] = version + 1  # a fresh, empty form
            st.toast(
                f"Added preference vector(s) {', '.join(f'#{i}' for i in added)} to run #{run.id}"
            )
            st.rerun()
