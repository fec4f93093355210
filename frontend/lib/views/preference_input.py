"""Choosing preference vectors three ways: evenly spread, an edited table, quarter-circle clicks.

Used by the New-run page (the run's vectors) and the Run page (vectors to add). Returns the
validated unit vectors and the messages of invalid rows; draws a preview of the rays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from frontend.lib import preferences
from frontend.lib.formatting import vector
from frontend.lib.preference_charts import PICK_ANGLE, picker_chart, ray_preview

__all__ = ["MODES", "add_picked", "choose_preferences", "numbered_table", "preview"]

MODES = ("Evenly spread", "Table", "Click on the quarter circle")


def add_picked(picked: list[list[float]], selection: Any) -> int:
    """Append the directions of a picker selection to ``picked``; return how many were new."""
    points = []
    if isinstance(selection, dict):
        points = selection.get(PICK_ANGLE) or []
    added = 0
    for point in points:
        angle = point.get("angle") if isinstance(point, dict) else None
        if angle is None:
            continue
        candidate = preferences.from_angle(float(angle))
        if any(
            max(abs(a - b) for a, b in zip(candidate, old, strict=True)) < 1e-9 for old in picked
        ):
            continue
        picked.append(candidate)
        added += 1
    return added


def _on_pick(chart_key: str, store_key: str, counter_key: str) -> None:
    event = st.session_state.get(chart_key)
    selection = getattr(event, "selection", None)
    if selection is None and isinstance(event, dict):
        selection = event.get("selection")
    picked = st.session_state.setdefault(store_key, [])
    if add_picked(picked, dict(selection or {})):
        st.session_state[counter_key] = st.session_state.get(counter_key, 0) + 1


def _even(key: str, m: int, default_count: int) -> list[list[float]]:
    count = st.number_input(
        "Number of preference vectors",
        min_value=1,
        max_value=preferences.MAX_PREFERENCES,
        value=default_count,
        step=1,
        key=f"{key}.count",
        help="evenly spread on the quarter circle (2 tasks) or over the simplex (more tasks)",
    )
    return preferences.spread_evenly(m, int(count))


def _reset_table(key: str, m: int) -> None:
    """The row count changed: the table becomes that many evenly spread vectors."""
    count = int(st.session_state.get(f"{key}.table_n") or 1)
    st.session_state[f"{key}.table_base"] = preferences.spread_evenly(m, count)
    st.session_state[f"{key}.table_version"] = st.session_state.get(f"{key}.table_version", 0) + 1


def numbered_table(vectors: Sequence[Sequence[float]], task_names: Sequence[str]) -> Any:
    """The vectors as a table whose rows are numbered from 1, as error messages count them."""
    table = preferences.to_table(vectors, task_names)
    table.index = range(1, len(table) + 1)
    table.index.name = "row"
    return table


def _table(key: str, task_names: Sequence[str], seed: list[list[float]]) -> tuple[list, list[str]]:
    base_key, version_key = f"{key}.table_base", f"{key}.table_version"
    if base_key not in st.session_state:
        st.session_state[base_key] = seed
        st.session_state[version_key] = 0
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    with right:
        st.number_input(
            "Rows",
            1,
            preferences.MAX_PREFERENCES,
            len(st.session_state[base_key]) or 3,
            key=f"{key}.table_n",
            help="changing the count fills the table with that many evenly spread vectors",
            on_change=_reset_table,
            args=(key, len(task_names)),
        )
    with left:
        st.caption(
            "One row per model, numbered as in the messages below; any non-negative scale "
            "(rows are normalised to unit length). Add or delete rows at the bottom of the table."
        )
    edited = st.data_editor(
        numbered_table(st.session_state[base_key], task_names),
        num_rows="dynamic",
        width="stretch",
        hide_index=False,
        key=f"{key}.table.{st.session_state[version_key]}",
        column_config={
            name: st.column_config.NumberColumn(name, min_value=None, format="%.4f")
            for name in task_names
        },
    )
    return preferences.validate_rows(preferences.from_table(edited), len(task_names))


def _clicks(key: str, task_names: Sequence[str], existing: Sequence[Sequence[float]]) -> list:
    store_key, counter_key = f"{key}.picked", f"{key}.picker_version"
    picked: list[list[float]] = st.session_state.setdefault(store_key, [])
    chart_key = f"{key}.picker.{st.session_state.get(counter_key, 0)}"
    st.caption(
        f"Click a point on the arc to add that direction. A ray near the {task_names[0]} axis "
        f"accepts a high {task_names[0]} loss and favours {task_names[1]}."
    )
    st.altair_chart(
        picker_chart(picked, task_names, existing=existing),
        on_select=lambda: _on_pick(chart_key, store_key, counter_key),
        selection_mode=PICK_ANGLE,
        key=chart_key,
        width="content",  # drawn at its own square size, so 45° looks like 45°
    )
    a, b = st.columns(2)
    if a.button("Remove last", key=f"{key}.pick_undo", disabled=not picked):
        picked.pop()
        st.rerun()
    if b.button("Clear", key=f"{key}.pick_clear", disabled=not picked):
        picked.clear()
        st.rerun()
    return list(picked)


def preview(
    vectors: Sequence[Sequence[float]],
    task_names: Sequence[str],
    existing: Sequence[Sequence[float]] = (),
) -> None:
    """The rays as a chart and the normalised vectors as a table."""
    if not vectors:
        st.caption("No preference vectors yet.")
        return
    chart_col, table_col = st.columns([3, 2])
    with chart_col:
        square = len(task_names) == 2
        st.altair_chart(
            ray_preview(vectors, task_names, existing=existing),
            width="content" if square else "stretch",
        )
    with table_col:
        table = numbered_table(vectors, task_names).round(4)
        st.dataframe(
            table,
            width="stretch",
            height=min(320, 38 + 35 * len(vectors)),
        )
        if len(task_names) == 2:
            st.caption(
                ", ".join(vector(v, 2) for v in vectors[:6]) + (" …" if len(vectors) > 6 else "")
            )


def choose_preferences(
    key: str,
    task_names: Sequence[str],
    *,
    default_count: int = 5,
    existing: Sequence[Sequence[float]] = (),
    modes: Sequence[str] = MODES,
) -> tuple[list[list[float]], list[str]]:
    """Draw the chooser and a preview; return (unit vectors, messages of invalid rows)."""
    m = len(task_names)
    options = [mode for mode in modes if m == 2 or mode != MODES[2]]
    mode = st.radio("Choose preference vectors", options, horizontal=True, key=f"{key}.mode")
    errors: list[str] = []
    if mode == MODES[0]:
        vectors = _even(key, m, default_count)
    elif mode == MODES[1]:
        vectors, errors = _table(key, task_names, preferences.spread_evenly(m, default_count))
    else:
        vectors = _clicks(key, task_names, existing)
    for message in errors:
        st.caption(f":red[{message}]")
    preview(vectors, task_names, existing=existing)
    return vectors, errors
