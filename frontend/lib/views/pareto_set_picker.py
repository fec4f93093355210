"""The trade-off picker of a ``psl`` run: any preference of its learned front, on demand.

A ``psl`` run trains one model for the whole front, so the page does not choose among K trained
points: the user drags a slider (two tasks) or clicks a point of the simplex (three tasks; more
tasks get one weight per task), the API evaluates that preference (``POST /runs/{id}/evaluate``)
and the page shows its losses and metrics beside the front drawn from 100 evaluated
preferences, with "Download this model" (``GET /runs/{id}/model?preference=``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from frontend.lib import session
from frontend.lib.api_client import ApiClient
from frontend.lib.models import Evaluation, RunDetail
from frontend.lib.views.downloads import download_buttons, pinned_fetchers

__all__ = [
    "front_frame",
    "picker_fetchers",
    "preference_grid",
    "render_pareto_set",
    "simplex_xy",
    "two_task_preference",
]

#: Preferences the learned front is drawn from.
FRONT_POINTS = 100
#: Examples of a data-set split behind the drawn front and behind the chosen point (a pass over
#: MultiMNIST's 20,000 test images takes seconds per preference on a CPU).
FRONT_SAMPLES = 256
POINT_SAMPLES = 2000
#: Seconds the front's one call may take (100 passes over FRONT_SAMPLES examples on a CPU).
FRONT_TIMEOUT = 120.0


def two_task_preference(angle_degrees: float) -> list[float]:
    """The unit preference at ``angle_degrees`` from the first task's axis (0: all on task 1)."""
    angle = math.radians(angle_degrees)
    return [math.cos(angle), math.sin(angle)]


def preference_grid(m: int, n: int = FRONT_POINTS) -> list[list[float]]:
    """About ``n`` preferences spread over the simplex: ``n`` angles for two tasks, a lattice
    (weights in steps of 1/h summing to 1) for more."""
    if m == 2:
        return [two_task_preference(90.0 * (i + 0.5) / n) for i in range(n)]
    h = 1
    while math.comb(h + m - 1, m - 1) < n:
        h += 1
    points: list[list[float]] = []

    def fill(prefix: list[int], left: int) -> None:
        if len(prefix) == m - 1:
            points.append([v / h for v in [*prefix, left]])
            return
        for v in range(left + 1):
            fill([*prefix, v], left - v)

    fill([], h)
    return points


def simplex_xy(weights: list[float]) -> tuple[float, float]:
    """2-D position of three weights in an equilateral triangle (task 1 bottom left, task 2
    bottom right, task 3 on top), for drawing and clicking the simplex."""
    total = sum(weights) or 1.0
    _, b, c = (w / total for w in weights)
    return b + c / 2, c * math.sqrt(3) / 2


def front_frame(evaluation: Evaluation, task_names: list[str]) -> pd.DataFrame:
    """One row per evaluated preference: its vector, losses and metrics in named columns."""
    rows = []
    for i, point in enumerate(evaluation.points):
        row: dict[str, Any] = {"point": i}
        for t, name in enumerate(task_names):
            row[f"w {name}"] = point.vector[t]
            row[f"loss {name}"] = _number(point.losses[t])
            for metric, values in point.metrics.items():
                row[f"{metric} {name}"] = _number(values[t])
        rows.append(row)
    return pd.DataFrame(rows)


def _number(value: float | str) -> float:
    return float(value) if not isinstance(value, str) else float("nan")


def picker_fetchers(
    api_url: str, token: str | None, timeout: float, run_id: int, vector: list[float]
) -> tuple[Callable[[], bytes], Callable[[], bytes]]:
    """Callables fetching the chosen preference's weights and then its config, pinned to the
    epoch the weights came from (training may go on in between)."""
    return pinned_fetchers(
        api_url,
        token,
        timeout,
        lambda client: client.preference_model(run_id, vector),
        lambda client, epoch: client.preference_config(run_id, vector, epoch=epoch),
        {},
        "epoch",
    )


def _chosen_vector(run: RunDetail) -> list[float] | None:
    names = run.task_names
    m = run.n_tasks
    key = f"psl.{run.id}"
    if m == 2:
        angle = st.slider(
            f"Trade-off: 0° weighs only {names[0]}'s loss, 90° only {names[1]}'s",
            min_value=0.0,
            max_value=90.0,
            value=45.0,
            step=0.5,
            key=f"{key}.angle",
            help="The preference is the direction (cos, sin) of this angle; the model's losses "
            "land along it: a larger weight on a task allows that task a larger loss.",
        )
        return two_task_preference(angle)
    if m == 3:
        return _simplex_click(run, key)
    cols = st.columns(m)
    weights = [
        col.number_input(f"weight {name}", 0.0, 1.0, 1.0 / m, 0.05, key=f"{key}.w{i}")
        for i, (col, name) in enumerate(zip(cols, names, strict=True))
    ]
    if not any(w > 0 for w in weights):
        st.warning("At least one weight must be above 0.")
        return None
    return weights


def _simplex_click(run: RunDetail, key: str) -> list[float]:
    grid = preference_grid(3)
    frame = pd.DataFrame(
        [
            {"i": i, "x": simplex_xy(w)[0], "y": simplex_xy(w)[1], **_weight_cols(w, run)}
            for i, w in enumerate(grid)
        ]
    )
    pick = alt.selection_point(name="pick", fields=["i"], on="click", clear=False)
    tips = [alt.Tooltip(c, format=".2f") for c in frame.columns if c.startswith("w ")]
    chart = (
        alt.Chart(frame)
        .mark_circle(size=90)
        .encode(
            x=alt.X("x:Q", axis=None, scale=alt.Scale(domain=[-0.05, 1.05])),
            y=alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[-0.05, 0.92])),
            color=alt.condition(pick, alt.value("#d62728"), alt.value("#9ecae1")),
            tooltip=tips,
        )
        .add_params(pick)
        .properties(width=330, height=290, title="Click a preference (corners: one task only)")
    )
    labels = pd.DataFrame(
        {"x": [0.0, 1.0, 0.5], "y": [-0.04, -0.04, 0.9], "t": list(run.task_names)}
    )
    text = alt.Chart(labels).mark_text(fontWeight="bold").encode(x="x:Q", y="y:Q", text="t:N")
    event = st.altair_chart(
        chart + text, on_select="rerun", selection_mode="pick", key=f"{key}.simplex"
    )
    chosen = _picked_index(event)
    if chosen is not None:
        st.session_state[f"{key}.simplex_choice"] = chosen
    index = st.session_state.get(f"{key}.simplex_choice")
    if index is None or not 0 <= index < len(grid):
        return [1 / 3, 1 / 3, 1 / 3]
    return grid[index]


def _weight_cols(weights: list[float], run: RunDetail) -> dict[str, float]:
    return {f"w {name}": w for name, w in zip(run.task_names, weights, strict=True)}


def _picked_index(event: Any) -> int | None:
    selection = getattr(event, "selection", None)
    if selection is None and isinstance(event, dict):
        selection = event.get("selection")
    points = (selection.get("pick") or []) if isinstance(selection, dict) else []
    if not points:
        return None
    value = points[0].get("i")
    return int(value) if value is not None else None


def _front(client: ApiClient, run: RunDetail, split: str, samples: int | None) -> Evaluation | None:
    """The 100-preference front, fetched once per run, split and progress of the run."""
    key = f"psl.{run.id}.front.{split}.{samples}.{run.progress.epoch}.{run.status}"
    if key not in st.session_state:
        grid = preference_grid(run.n_tasks)
        with st.spinner(f"Evaluating the learned front at {len(grid)} preferences…"):
            st.session_state[key] = session.try_api(
                lambda: client.evaluate(run.id, grid, split, samples, timeout=FRONT_TIMEOUT),
                "Could not evaluate the learned front",
            )
    return st.session_state[key]


def examples_note(evaluation: Evaluation) -> str:
    """How many examples an evaluation used: "all 20,000" or "1,000 of 20,000 (an estimate)"."""
    size, used = evaluation.split_size, evaluation.samples
    if size is None or used is None:
        return ""
    if used >= size:
        return f"all {size:,} {evaluation.split} examples"
    return f"an estimate on {used:,} of {size:,} {evaluation.split} examples"


def _front_chart(front: pd.DataFrame, chosen: pd.DataFrame, names: list[str]) -> alt.Chart:
    x, y = f"loss {names[0]}", f"loss {names[1]}"
    base = alt.Chart(front).encode(
        x=alt.X(f"{x}:Q", scale=alt.Scale(zero=False)),
        y=alt.Y(f"{y}:Q", scale=alt.Scale(zero=False)),
    )
    if len(names) == 2:
        curve = base.mark_line(point=True, opacity=0.6)
    else:
        curve = base.mark_circle(size=40).encode(color=alt.Color(f"loss {names[2]}:Q"))
    dot = (
        alt.Chart(chosen)
        .mark_point(size=260, filled=True, color="#d62728")
        .encode(x=f"{x}:Q", y=f"{y}:Q")
    )
    title = f"The learned front ({FRONT_POINTS} preferences)"
    return (curve + dot).properties(height=380, title=title)


def render_pareto_set(run: RunDetail, has_test_split: bool) -> None:
    """The picker section of a ``psl`` run's page."""
    st.subheader("Any trade-off of the learned front")
    st.caption(
        "This run trained one model for every preference: pick one and its model is "
        "computed on the spot, no retraining."
    )
    client = session.client()
    split = "train"
    if has_test_split:
        split = st.radio("Split", ["test", "train"], horizontal=True, key=f"psl.{run.id}.split")
    vector = _chosen_vector(run)
    # On a data set every preference is a pass over the split: the front and the dragged point
    # are estimated on a fixed draw of examples, and the whole split is one click away.
    whole = has_test_split and st.toggle(
        "Evaluate the chosen point on the whole split (slower)", key=f"psl.{run.id}.whole"
    )
    front = _front(client, run, split, FRONT_SAMPLES if has_test_split else None)
    if front is None or vector is None:
        return
    samples = None if whole or not has_test_split else POINT_SAMPLES
    chosen = session.try_api(
        lambda: client.evaluate(run.id, [vector], split, samples),
        "Could not evaluate this preference",
    )
    if chosen is None:
        return
    names = list(run.task_names)
    point = front_frame(chosen, names)
    left, right = st.columns([3, 2])
    with left:
        st.altair_chart(_front_chart(front_frame(front, names), point, names))
        if note := examples_note(front):
            st.caption(f"Front: {note}.")
    with right:
        st.markdown(
            "**Preference** "
            + ", ".join(f"{n} {w:.3f}" for n, w in zip(names, chosen.points[0].vector, strict=True))
        )
        table = {"loss": chosen.points[0].losses, **chosen.points[0].metrics}
        st.dataframe(pd.DataFrame(table, index=names), width="stretch")
        note = examples_note(chosen)
        st.caption(
            f"{split} split · checkpoint of epoch {chosen.epoch}" + (f" · {note}" if note else "")
        )
        cfg = session.settings()
        weights, config = picker_fetchers(
            cfg.api_url, session.token(), cfg.request_timeout, run.id, chosen.points[0].vector
        )
        download_buttons(
            weights,
            config,
            ("model.safetensors", "config.json"),
            f"psl.{run.id}.dl",
            labels=("Download this model", "Download its config"),
            side_by_side=False,
        )
        st.caption(
            "Load with `pmtl_core.load_model('config.json', 'model.safetensors')`; "
            "download the weights first, the config follows their epoch."
        )
