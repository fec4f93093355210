"""Tables behind the charts: metric points as a DataFrame, current points, trajectories, rays.

Pure functions of pandas data (no Streamlit, no HTTP), so the chart inputs are testable.
Column names: ``l0 … l{m-1}`` are per-task losses, ``{metric}{i}`` per-task metric values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from frontend.lib.models import MetricPoint

__all__ = [
    "BASE_COLUMNS",
    "current_points",
    "extent",
    "metric_frame",
    "neighbour_gaps",
    "ray_segments",
    "trajectory_segments",
    "value_columns",
]

BASE_COLUMNS = ["seq", "preference_id", "epoch", "split", "wall_time"]


def value_columns(view: str, n_tasks: int) -> list[str]:
    """The per-task columns of ``view`` (``"loss"`` or a metric name such as ``accuracy``)."""
    prefix = "l" if view == "loss" else view
    return [f"{prefix}{i}" for i in range(n_tasks)]


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def metric_frame(points: Iterable[MetricPoint], n_tasks: int) -> pd.DataFrame:
    """One row per metric point: base columns, losses ``l{i}`` and metrics ``{name}{i}``."""
    rows = []
    for p in points:
        row: dict[str, object] = {
            "seq": p.seq,
            "preference_id": p.preference_id,
            "epoch": p.epoch,
            "split": p.split,
            "wall_time": p.wall_time,
        }
        for i in range(n_tasks):
            row[f"l{i}"] = _num(p.losses[i]) if i < len(p.losses) else math.nan
        for name, values in p.metrics.items():
            for i in range(n_tasks):
                row[f"{name}{i}"] = _num(values[i]) if i < len(values) else math.nan
        rows.append(row)
    if not rows:
        columns = BASE_COLUMNS + value_columns("loss", n_tasks)
        return pd.DataFrame(columns=columns).astype({"preference_id": int, "epoch": int})
    return pd.DataFrame(rows)


def current_points(frame: pd.DataFrame, split: str) -> pd.DataFrame:
    """The newest row of every preference on ``split`` (one row per preference id)."""
    rows = frame[frame["split"] == split]
    if rows.empty:
        return rows
    rows = rows.sort_values(["preference_id", "epoch", "seq"])
    return rows.groupby("preference_id", as_index=False).tail(1).reset_index(drop=True)


def trajectory_segments(
    frame: pd.DataFrame, split: str, x: str, y: str, last_epochs: int = 30
) -> pd.DataFrame:
    """Segments between consecutive epochs of each preference, with a fading ``opacity``.

    Only the newest ``last_epochs`` epochs of each preference are kept, so the chart's data
    stays small on long runs; the newest segment is the most opaque.
    """
    columns = ["preference_id", "epoch", "x", "y", "x2", "y2", "opacity"]
    rows = frame[frame["split"] == split].sort_values(["preference_id", "epoch", "seq"])
    if rows.empty or x not in rows or y not in rows:
        return pd.DataFrame(columns=columns)
    rows = rows.drop_duplicates(["preference_id", "epoch"], keep="last")
    parts = []
    for pref_id, group in rows.groupby("preference_id"):
        group = group.tail(last_epochs + 1)
        if len(group) < 2:
            continue
        xs, ys = group[x].to_numpy(), group[y].to_numpy()
        n = len(group) - 1
        parts.append(
            pd.DataFrame(
                {
                    "preference_id": pref_id,
                    "epoch": group["epoch"].to_numpy()[1:],
                    "x": xs[:-1],
                    "y": ys[:-1],
                    "x2": xs[1:],
                    "y2": ys[1:],
                    "opacity": 0.08 + 0.62 * (np.arange(1, n + 1) / n) ** 1.5,
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=columns)
    segments = pd.concat(parts, ignore_index=True)
    return segments.dropna(subset=["x", "y", "x2", "y2"]).reset_index(drop=True)


def extent(values: Iterable[float], pad: float = 0.08) -> float:
    """Upper end of an axis that starts at zero and shows every finite value."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    top = max(finite, default=1.0)
    return top * (1 + pad) if top > 0 else 1.0


def ray_segments(vectors: dict[int, Sequence[float]], x_max: float, y_max: float) -> pd.DataFrame:
    """Each 2-task preference ray from the origin to where it leaves the plot."""
    rows = []
    for pref_id, vec in vectors.items():
        u1, u2 = float(vec[0]), float(vec[1])
        limits = [b / u for b, u in ((x_max, u1), (y_max, u2)) if u > 0]
        if not limits:
            continue
        s = min(limits)
        rows.append({"preference_id": pref_id, "x": 0.0, "y": 0.0, "x2": u1 * s, "y2": u2 * s})
    return pd.DataFrame(rows, columns=["preference_id", "x", "y", "x2", "y2"])


def neighbour_gaps(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Pairs of angularly neighbouring preferences of a 2-task front, widest gap first.

    ``points`` needs ``preference_id``, ``angle`` and the loss columns ``x``/``y``; the gap of a
    pair is the distance between their current loss vectors.
    """
    columns = ["left", "right", "gap", "angle_left", "angle_right"]
    rows = points.dropna(subset=[x, y]).sort_values("angle")
    if len(rows) < 2:
        return pd.DataFrame(columns=columns)
    a, b = rows.iloc[:-1], rows.iloc[1:]
    gap = np.hypot(b[x].to_numpy() - a[x].to_numpy(), b[y].to_numpy() - a[y].to_numpy())
    out = pd.DataFrame(
        {
            "left": a["preference_id"].to_numpy(),
            "right": b["preference_id"].to_numpy(),
            "gap": gap,
            "angle_left": a["angle"].to_numpy(),
            "angle_right": b["angle"].to_numpy(),
        }
    )
    return out.sort_values("gap", ascending=False).reset_index(drop=True)
