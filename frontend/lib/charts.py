"""Altair charts: the live front, hypervolume over time, compare overlay, >= 3-task views.

Every chart takes tidy pandas frames built by :mod:`frontend.lib.front_data`. Colours of
preferences are passed in (``colours``: preference id → hex) so rays, points and trajectories of
one preference always share a colour. The front's points carry a point selection named
:data:`PICK` over ``preference_id``, for ``st.altair_chart(..., on_select=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

__all__ = [
    "PICK",
    "compare_chart",
    "front_chart",
    "hypervolume_chart",
    "parallel_coordinates",
    "scatter_matrix",
]

#: Name of the point selection on the front's points.
PICK = "pick"
_FRONT_HEIGHT = 430


def _colour(field: str, colours: dict[str, str], title: str, legend: bool) -> alt.Color:
    scale = alt.Scale(domain=list(colours), range=list(colours.values()))
    return alt.Color(
        f"{field}:N",
        scale=scale,
        title=title,
        legend=alt.Legend(symbolLimit=24) if legend else None,
        sort=list(colours),
    )


def _with_labels(frame: pd.DataFrame, labels: dict[int, str]) -> pd.DataFrame:
    out = frame.copy()
    out["preference"] = out["preference_id"].map(labels).fillna("?")
    return out


def front_chart(
    current: pd.DataFrame,
    *,
    labels: dict[int, str],
    colours: dict[int, str],
    x_title: str,
    y_title: str,
    x_domain: tuple[float, float] | None = None,
    y_domain: tuple[float, float] | None = None,
    segments: pd.DataFrame | None = None,
    rays: pd.DataFrame | None = None,
    highlight_front: bool = True,
    selected: int | None = None,
    tooltip: Sequence[str] = (),
) -> alt.LayerChart:
    """Task-1 vs task-2 front: rays, fading trajectories, non-dominated set, selectable points.

    ``current`` has one row per preference: ``preference_id``, ``x``, ``y``, ``epoch``,
    ``status``, ``non_dominated`` and any ``tooltip`` columns.
    """
    by_label = {labels[pid]: colours[pid] for pid in labels if pid in colours}
    legend = len(by_label) <= 24
    colour = _colour("preference", by_label, "preference", legend)
    x_scale = alt.Scale(domain=list(x_domain)) if x_domain else alt.Scale(zero=False)
    y_scale = alt.Scale(domain=list(y_domain)) if y_domain else alt.Scale(zero=False)
    x = alt.X("x:Q", title=x_title, scale=x_scale)
    y = alt.Y("y:Q", title=y_title, scale=y_scale)
    layers: list[alt.Chart] = []
    if rays is not None and not rays.empty:
        layers.append(
            alt.Chart(_with_labels(rays, labels))
            .mark_rule(strokeDash=[4, 4], strokeWidth=1.2, opacity=0.55)
            .encode(x=x, y=y, x2="x2:Q", y2="y2:Q", color=colour)
        )
    if segments is not None and not segments.empty:
        layers.append(
            alt.Chart(_with_labels(segments, labels))
            .mark_rule(strokeWidth=2)
            .encode(
                x=x,
                y=y,
                x2="x2:Q",
                y2="y2:Q",
                color=colour,
                opacity=alt.Opacity("opacity:Q", scale=None, legend=None),
            )
        )
    points = _with_labels(current, labels).dropna(subset=["x", "y"])
    if highlight_front and not points.empty:
        front = points[points["non_dominated"]].sort_values("x")
        if len(front) >= 2:
            layers.append(
                alt.Chart(front)
                .mark_line(color="#222222", strokeWidth=1.5, strokeDash=[2, 2], opacity=0.7)
                .encode(x=x, y=y, order="x:Q")
            )
    pick = alt.selection_point(name=PICK, fields=["preference_id"], on="click", empty=True)
    base_tooltip = [
        alt.Tooltip("preference:N"),
        alt.Tooltip("epoch:Q"),
        alt.Tooltip("status:N"),
        alt.Tooltip("x:Q", title=x_title, format=".4g"),
        alt.Tooltip("y:Q", title=y_title, format=".4g"),
        alt.Tooltip("non_dominated:N", title="non-dominated"),
    ]
    extra = [alt.Tooltip(f"{c}:Q", format=".4g") for c in tooltip if c in points]
    dominated_size = 70 if highlight_front else 110
    layers.append(
        alt.Chart(points)
        .mark_point(filled=True, strokeWidth=1.6)
        .encode(
            x=x,
            y=y,
            color=colour,
            size=alt.condition("datum.non_dominated", alt.value(150), alt.value(dominated_size)),
            stroke=alt.condition(
                "datum.non_dominated", alt.value("#111111"), alt.value("transparent")
            )
            if highlight_front
            else alt.value("transparent"),
            shape=alt.condition("datum.non_dominated", alt.value("circle"), alt.value("diamond"))
            if highlight_front
            else alt.value("circle"),
            opacity=alt.condition(pick, alt.value(0.95), alt.value(0.35)),
            tooltip=base_tooltip + extra,
        )
        .add_params(pick)
    )
    if selected is not None:
        ring = points[points["preference_id"] == selected]
        if not ring.empty:
            layers.append(
                alt.Chart(ring)
                .mark_point(shape="circle", size=520, filled=False, strokeWidth=2.5)
                .encode(x=x, y=y, color=alt.value("#e4003a"))
            )
    # SVG keeps the points in the page (crisp, and inspectable by browser tests).
    return alt.layer(*layers).properties(
        height=_FRONT_HEIGHT, usermeta={"embedOptions": {"renderer": "svg"}}
    )


def hypervolume_chart(history: pd.DataFrame, colour: str | None = None) -> alt.Chart:
    """Hypervolume after every epoch (``epoch``, ``hypervolume``, ``wall_time``[, ``run``])."""
    base = alt.Chart(history).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("hypervolume:Q", title="hypervolume", scale=alt.Scale(zero=False)),
        tooltip=[
            alt.Tooltip("epoch:Q"),
            alt.Tooltip("hypervolume:Q", format=".5g"),
            alt.Tooltip("wall_time:Q", title="wall time (s)", format=".1f"),
        ],
    )
    if "run" in history:
        base = base.encode(color=alt.Color("run:N", title="run"))
        return (base.mark_line() + base.mark_point(filled=True, size=30)).properties(height=260)
    line = base.mark_line(color=colour or "#3b4cc0")
    dots = base.mark_point(filled=True, size=30, color=colour or "#3b4cc0")
    return (line + dots).properties(height=260)


def compare_chart(
    points: pd.DataFrame,
    *,
    colours: dict[str, str],
    x_title: str,
    y_title: str,
    x_domain: tuple[float, float] | None = None,
    y_domain: tuple[float, float] | None = None,
) -> alt.LayerChart:
    """Fronts of several runs overlaid (``run``, ``x``, ``y``, ``non_dominated``, ``epoch``)."""
    colour = _colour("run", colours, "run", True)
    x_scale = alt.Scale(domain=list(x_domain)) if x_domain else alt.Scale(zero=False)
    y_scale = alt.Scale(domain=list(y_domain)) if y_domain else alt.Scale(zero=False)
    x = alt.X("x:Q", title=x_title, scale=x_scale)
    y = alt.Y("y:Q", title=y_title, scale=y_scale)
    data = points.dropna(subset=["x", "y"])
    front = data[data["non_dominated"]].sort_values(["run", "x"])
    lines = (
        alt.Chart(front)
        .mark_line(strokeWidth=1.5, opacity=0.8)
        .encode(x=x, y=y, color=colour, detail="run:N", order="x:Q")
    )
    dots = (
        alt.Chart(data)
        .mark_point(filled=True, size=90, opacity=0.85)
        .encode(
            x=x,
            y=y,
            color=colour,
            shape=alt.Shape("run:N", legend=None),
            tooltip=[
                alt.Tooltip("run:N"),
                alt.Tooltip("preference:N"),
                alt.Tooltip("epoch:Q"),
                alt.Tooltip("x:Q", title=x_title, format=".4g"),
                alt.Tooltip("y:Q", title=y_title, format=".4g"),
            ],
        )
    )
    return (
        alt.layer(lines, dots)
        .properties(height=_FRONT_HEIGHT, usermeta={"embedOptions": {"renderer": "svg"}})
        .interactive()
    )


def scatter_matrix(
    data: pd.DataFrame,
    columns: Sequence[str],
    *,
    colour_field: str,
    colours: dict[str, str],
    titles: dict[str, str] | None = None,
    size: int = 150,
) -> alt.RepeatChart:
    """Pairwise scatter plots of ``columns`` (one panel per pair), coloured by ``colour_field``."""
    titles = titles or {}
    frame = data.rename(columns={c: titles.get(c, c) for c in columns})
    names = [titles.get(c, c) for c in columns]
    colour = _colour(colour_field, colours, colour_field, len(colours) <= 24)
    return (
        alt.Chart(frame)
        .mark_point(filled=True, size=50, opacity=0.85)
        .encode(
            x=alt.X(alt.repeat("column"), type="quantitative", scale=alt.Scale(zero=False)),
            y=alt.Y(alt.repeat("row"), type="quantitative", scale=alt.Scale(zero=False)),
            color=colour,
            tooltip=[alt.Tooltip(f"{colour_field}:N")]
            + [alt.Tooltip(f"{n}:Q", format=".4g") for n in names],
        )
        .properties(width=size, height=size)
        .repeat(row=names, column=names)
    )


def parallel_coordinates(
    data: pd.DataFrame,
    columns: Sequence[str],
    *,
    colour_field: str,
    colours: dict[str, str],
    titles: dict[str, str] | None = None,
) -> alt.Chart:
    """One polyline per row across ``columns``, each axis scaled to [0, 1] (raw value in tips)."""
    titles = titles or {}
    frame = data.reset_index(drop=True).copy()
    frame["row"] = frame.index
    long = frame.melt(
        id_vars=["row", colour_field], value_vars=list(columns), var_name="axis", value_name="value"
    )
    low = long.groupby("axis")["value"].transform("min")
    high = long.groupby("axis")["value"].transform("max")
    span = (high - low).where(high > low, 1.0)
    long["scaled"] = (long["value"] - low) / span
    long["axis"] = long["axis"].map(lambda c: titles.get(c, c))
    order = [titles.get(c, c) for c in columns]
    colour = _colour(colour_field, colours, colour_field, len(colours) <= 24)
    return (
        alt.Chart(long)
        .mark_line(point=True, opacity=0.75)
        .encode(
            x=alt.X("axis:N", sort=order, title=None),
            y=alt.Y("scaled:Q", title="scaled value (min → max per axis)"),
            color=colour,
            detail="row:N",
            tooltip=[
                alt.Tooltip(f"{colour_field}:N"),
                alt.Tooltip("axis:N"),
                alt.Tooltip("value:Q", format=".4g"),
            ],
        )
        .properties(height=320)
    )
