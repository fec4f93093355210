"""The Compare page: fronts of several runs of one problem overlaid, with HV, spread and time.

Hypervolumes are computed by the API against one reference point: the one the API uses on each
run's page (returned with ``/hypervolume``: the problem's own), so a run shows the same number
here as on its page. Should the runs' points ever differ, the component-wise largest is used and
the page says so. Time is training time: while at least one of the run's jobs was training.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import streamlit as st

from frontend.lib import catalogue, charts, session
from frontend.lib.colours import RUN_PALETTE
from frontend.lib.formatting import duration, vector
from frontend.lib.front_data import extent
from frontend.lib.models import Front, RunDetail

__all__ = ["aligned_reference", "render", "summary_row", "training_time"]


def aligned_reference(refs: list[list[float] | None]) -> tuple[list[float] | None, bool]:
    """One reference point for runs whose API reference points are ``refs``: theirs when they
    agree, else the component-wise largest; and whether they agreed."""
    known = [r for r in refs if r]
    if not known:
        return None, True
    same = all(r == known[0] for r in known)
    return [max(values) for values in zip(*known, strict=True)], same


def training_time(run: RunDetail) -> float | None:
    """Seconds during which at least one job of the run was training (now for a running job);
    time spent queued between jobs is not counted."""
    now = datetime.now(UTC)
    spans = sorted((j.started_at, j.finished_at or now) for j in run.jobs if j.started_at)
    if not spans:
        return None
    total, (start, end) = 0.0, spans[0]
    for s, e in spans[1:]:
        if s > end:
            total += (end - start).total_seconds()
            start, end = s, e
        else:
            end = max(end, e)
    return total + (end - start).total_seconds()


def summary_row(run: RunDetail, front: Front) -> dict[str, object]:
    """One row of the comparison table."""
    return {
        "run": f"#{run.id} {run.name}",
        "method": run.method,
        "status": run.status,
        "models": len(front.points),
        "non-dominated": int(sum(p.non_dominated for p in front.points)),
        "hypervolume": front.hypervolume,
        "spread": front.spread,
        "training time": duration(training_time(run)),
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
    problem, chosen = _choose(runs)
    if not chosen:
        st.info("Choose one or more runs of the problem.")
        return
    splits = catalogue.splits_of(problem)
    split = st.radio("Split", splits, horizontal=True, key=f"compare.split.{problem}")
    if splits == ["train"]:
        st.caption(f"{problem} is a function problem: it has only a train split.")
    try:
        details = [client.get_run(run_id) for run_id in chosen]
        refs = [client.hypervolume(r.id, split).reference_point for r in details]
        ref, agreed = aligned_reference(refs)
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
                help="Deb's spread of the non-dominated points, as the API computes it: "
                "0 = evenly spaced, larger = clusters and gaps",
            ),
        },
    )
    where = "?" if ref is None else ", ".join(f"{v:.3g}" for v in ref)
    why = (
        "the reference point the API uses on each run's page, so the numbers match them"
        if agreed
        else "the component-wise largest of the runs' own reference points (they differ), "
        "so a run's number here can be larger than on its page"
    )
    st.caption(
        f"Hypervolume on the {split} split against the common reference point ({where}): "
        f"{why}. Training time counts the time at least one of the run's jobs was training, "
        "not the time its jobs waited in the queue."
    )
