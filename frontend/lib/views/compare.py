"""The Compare page: fronts of several runs of one problem overlaid, with HV, spread and time.

Hypervolumes are computed by the API against one common reference point (the worst loss of
every task over all compared fronts, plus 10 %), so they are comparable across runs.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import streamlit as st

from frontend.lib import charts, session
from frontend.lib.colours import RUN_PALETTE
from frontend.lib.formatting import duration, vector
from frontend.lib.front_data import extent, spread
from frontend.lib.models import Front, RunDetail

__all__ = ["common_reference", "render", "summary_row", "wall_time"]


def common_reference(fronts: list[Front], n_tasks: int) -> list[float]:
    """The worst finite loss of each task over all fronts, plus 10 % (at least a small margin)."""
    worst = [0.0] * n_tasks
    for front in fronts:
        for p in front.points:
            for i, v in enumerate(p.losses[:n_tasks]):
                if v is not None and np.isfinite(v):
                    worst[i] = max(worst[i], float(v))
    return [w * 1.1 if w > 0 else 1.0 for w in worst]


def wall_time(run: RunDetail) -> float | None:
    """Seconds from the first job's start to the last job's end (now while running)."""
    starts = [j.started_at for j in run.jobs if j.started_at]
    if not starts:
        return None
    ends = [j.finished_at or datetime.now(UTC) for j in run.jobs if j.started_at]
    return (max(ends) - min(starts)).total_seconds()


def summary_row(run: RunDetail, front: Front) -> dict[str, object]:
    """One row of the comparison table."""
    losses = np.array(
        [[np.nan if v is None else v for v in p.losses] for p in front.points if p.non_dominated],
        dtype=float,
    ).reshape(-1, run.n_tasks)
    return {
        "run": f"#{run.id} {run.name}",
        "method": run.method,
        "status": run.status,
        "models": len(front.points),
        "non-dominated": int(sum(p.non_dominated for p in front.points)),
        "hypervolume": front.hypervolume,
        "spread": spread(losses),
        "wall time": duration(wall_time(run)),
    }


def _points(run: RunDetail, label: str, front: Front) -> pd.DataFrame:
    rows = []
    vectors = {p.id: p.vector for p in run.preferences}
    for p in front.points:
        row = {
            "run": label,
            "preference": vector(vectors.get(p.preference_id, p.vector), 2),
            "epoch": p.epoch,
            "non_dominated": p.non_dominated,
        }
        for i, v in enumerate(p.losses):
            row[f"l{i}"] = np.nan if v is None else v
        rows.append(row)
    return pd.DataFrame(rows)


def _choose(runs: list) -> tuple[str, list[int]]:
    problems = sorted({r.problem for r in runs})
    problem = st.selectbox("Problem", problems, key="compare.problem")
    same = [r for r in runs if r.problem == problem]
    labels = {r.id: f"#{r.id} · {r.name} · {r.method} · {r.status}" for r in same}
    chosen = st.multiselect(
        "Runs",
        list(labels),
        default=list(labels)[:3],
        format_func=labels.__getitem__,
        key=f"compare.runs.{problem}",
    )
    return problem, chosen


def _charts(data: pd.DataFrame, task_names: list[str], colours: dict[str, str]) -> None:
    cols = [f"l{i}" for i in range(len(task_names))]
    titles = {c: f"loss of {t}" for c, t in zip(cols, task_names, strict=True)}
    if len(task_names) == 2:
        chart = charts.compare_chart(
            data.rename(columns={"l0": "x", "l1": "y"}),
            colours=colours,
            x_title=titles["l0"],
            y_title=titles["l1"],
            x_domain=(0.0, extent(data["l0"])),
            y_domain=(0.0, extent(data["l1"])),
        )
        st.altair_chart(chart, width="stretch")
        return
    st.altair_chart(
        charts.scatter_matrix(data, cols, colour_field="run", colours=colours, titles=titles)
    )
    st.altair_chart(
        charts.parallel_coordinates(data, cols, colour_field="run", colours=colours, titles=titles),
        width="stretch",
    )


def render() -> None:
    """Draw the page."""
    st.title("Compare runs")
    client = session.client()
    runs = session.try_api(lambda: client.all_runs(limit=500), "Could not list runs")
    if not runs:
        if runs is not None:
            st.info("No runs to compare yet.")
        return
    _, chosen = _choose(runs)
    if not chosen:
        st.info("Choose one or more runs of the problem.")
        return
    split = st.radio("Split", ["test", "train"], horizontal=True, key="compare.split")
    try:
        details = [client.get_run(run_id) for run_id in chosen]
        fronts = [client.front(r.id, split) for r in details]
        if not any(f.points for f in fronts) and split == "test":
            st.caption("No test points (a function problem?): showing the train split.")
            split = "train"
            fronts = [client.front(r.id, split) for r in details]
        n_tasks = details[0].n_tasks
        ref = common_reference(fronts, n_tasks)
        fronts = [client.front(r.id, split, ref=ref) for r in details]
    except session.API_ERRORS as exc:
        session.report(exc, "Could not load the fronts")
        return
    labels = [f"#{r.id} {r.name}" for r in details]
    colours = {label: RUN_PALETTE[i % len(RUN_PALETTE)] for i, label in enumerate(labels)}
    data = pd.concat(
        [_points(r, lab, f) for r, lab, f in zip(details, labels, fronts, strict=True)],
        ignore_index=True,
    )
    if data.empty:
        st.info("The chosen runs have no points yet.")
        return
    _charts(data, list(details[0].task_names), colours)
    table = pd.DataFrame([summary_row(r, f) for r, f in zip(details, fronts, strict=True)])
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "hypervolume": st.column_config.NumberColumn(format="%.5g"),
            "spread": st.column_config.NumberColumn(
                format="%.3f",
                help="coefficient of variation of nearest-neighbour distances "
                "among non-dominated points: 0 = evenly spaced",
            ),
        },
    )
    st.caption(
        f"Hypervolume on the {split} split against the common reference point "
        f"({', '.join(f'{v:.3g}' for v in ref)}); wall time from the first job's start to the "
        "last job's end."
    )
