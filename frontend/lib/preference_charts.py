"""Altair charts for choosing preference vectors: the quarter-circle picker and ray previews.

Convention (DESIGN.md): a preference vector is a direction in loss space; a ray close to the
task-1 axis accepts a high task-1 loss and favours task 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import altair as alt
import pandas as pd

from frontend.lib.colours import ramp

__all__ = ["PICK_ANGLE", "picker_chart", "ray_preview"]

#: Name of the point selection on the picker's arc (field ``angle`` in degrees).
PICK_ANGLE = "pick_angle"


def _rays(vectors: Sequence[Sequence[float]], kind: str) -> pd.DataFrame:
    rows = []
    n = len(vectors)
    for i, v in enumerate(vectors):
        norm = math.hypot(float(v[0]), float(v[1])) or 1.0
        u1, u2 = float(v[0]) / norm, float(v[1]) / norm
        rows.append(
            {
                "ray": f"{kind} {i + 1}",
                "kind": kind,
                "x": 0.0,
                "y": 0.0,
                "x2": u1,
                "y2": u2,
                "u1": u1,
                "u2": u2,
                "angle": round(math.degrees(math.atan2(u2, u1)), 2),
                "colour": ramp(i / (n - 1) if n > 1 else 0.5),
            }
        )
    return pd.DataFrame(
        rows, columns=["ray", "kind", "x", "y", "x2", "y2", "u1", "u2", "angle", "colour"]
    )


_SCALE = alt.Scale(domain=[0, 1.08])


def _axes(task_names: Sequence[str]) -> tuple[alt.X, alt.Y]:
    x = alt.X("x:Q", title=f"loss of {task_names[0]} →", scale=_SCALE)
    y = alt.Y("y:Q", title=f"loss of {task_names[1]} →", scale=_SCALE)
    return x, y


def _ray_layers(
    rays: pd.DataFrame, x: alt.X, y: alt.Y, dash: list[int] | None = None
) -> list[alt.Chart]:
    if rays.empty:
        return []
    tips = [
        alt.Tooltip("ray:N"),
        alt.Tooltip("angle:Q", title="angle (°)"),
        alt.Tooltip("u1:Q", format=".3f"),
        alt.Tooltip("u2:Q", format=".3f"),
    ]
    line = (
        alt.Chart(rays)
        .mark_rule(strokeWidth=2, strokeDash=dash or [])
        .encode(x=x, y=y, x2="x2:Q", y2="y2:Q", color=alt.Color("colour:N", scale=None))
    )
    tip = (
        alt.Chart(rays)
        .mark_point(filled=True, size=60)
        .encode(
            x=alt.X("x2:Q", scale=_SCALE, title=x.to_dict().get("title")),
            y=alt.Y("y2:Q", scale=_SCALE, title=y.to_dict().get("title")),
            color=alt.Color("colour:N", scale=None),
            tooltip=tips,
        )
    )
    return [line, tip]


def picker_chart(
    vectors: Sequence[Sequence[float]],
    task_names: Sequence[str],
    existing: Sequence[Sequence[float]] = (),
    step_degrees: float = 1.0,
) -> alt.LayerChart:
    """Quarter circle of clickable directions (every ``step_degrees``) with the chosen rays.

    ``existing`` rays (e.g. a run's current preferences) are drawn in grey underneath.
    """
    x, y = _axes(task_names)
    n = round(90 / step_degrees)
    arc = pd.DataFrame(
        {
            "angle": [round(i * step_degrees, 3) for i in range(n + 1)],
        }
    )
    arc["x"] = [math.cos(math.radians(a)) for a in arc["angle"]]
    arc["y"] = [math.sin(math.radians(a)) for a in arc["angle"]]
    pick = alt.selection_point(name=PICK_ANGLE, fields=["angle"], on="click", empty=False)
    layers: list[alt.Chart] = []
    old = _rays(existing, "existing")
    if not old.empty:
        old["colour"] = "#b0b0b0"
        layers.extend(_ray_layers(old, x, y, dash=[3, 3]))
    layers.extend(_ray_layers(_rays(vectors, "ray"), x, y))
    layers.append(
        alt.Chart(arc)
        .mark_point(filled=True, size=70, color="#6b7280", opacity=0.45)
        .encode(
            x=x,
            y=y,
            size=alt.condition(pick, alt.value(160), alt.value(70)),
            tooltip=[alt.Tooltip("angle:Q", title="click to add the ray at (°)")],
        )
        .add_params(pick)
    )
    return alt.layer(*layers).properties(width=380, height=380)


def ray_preview(
    vectors: Sequence[Sequence[float]],
    task_names: Sequence[str],
    existing: Sequence[Sequence[float]] = (),
) -> alt.LayerChart | alt.Chart:
    """The rays that will be trained: a quarter-circle plot for 2 tasks, else parallel axes."""
    if len(task_names) == 2:
        x, y = _axes(task_names)
        layers: list[alt.Chart] = []
        old = _rays(existing, "existing")
        if not old.empty:
            old["colour"] = "#b0b0b0"
            layers.extend(_ray_layers(old, x, y, dash=[3, 3]))
        layers.extend(_ray_layers(_rays(vectors, "ray"), x, y))
        if not layers:
            layers.append(
                alt.Chart(pd.DataFrame({"x": [0.0], "y": [0.0]})).mark_point().encode(x=x, y=y)
            )
        return alt.layer(*layers).properties(width=320, height=320)
    rows = []
    n = len(vectors)
    for i, v in enumerate(vectors):
        total = sum(float(a) for a in v) or 1.0
        for name, value in zip(task_names, v, strict=False):
            rows.append(
                {
                    "ray": f"ray {i + 1}",
                    "task": name,
                    "share": float(value) / total,
                    "colour": ramp(i / (n - 1) if n > 1 else 0.5),
                }
            )
    data = pd.DataFrame(rows, columns=["ray", "task", "share", "colour"])
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("task:N", sort=list(task_names), title=None),
            y=alt.Y("share:Q", title="share of the direction (sums to 1)"),
            color=alt.Color("colour:N", scale=None),
            detail="ray:N",
            tooltip=["ray:N", "task:N", alt.Tooltip("share:Q", format=".3f")],
        )
        .properties(height=260)
    )
