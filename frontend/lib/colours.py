"""Colours of preference vectors and runs: one colour per preference, ordered by direction."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["PALETTE", "RUN_PALETTE", "angle_degrees", "preference_colours", "ramp"]

#: Anchors of the sequential ramp (plasma, without its palest end) used for preferences.
PALETTE = (
    "#0d0887",
    "#46039f",
    "#7201a8",
    "#9c179e",
    "#bd3786",
    "#d8576b",
    "#ed7953",
    "#fb9f3a",
    "#e8b10c",
)

#: Categorical colours of runs on the compare page.
RUN_PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)


def _hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{round(max(0.0, min(255.0, c))):02x}" for c in rgb)


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def ramp(t: float) -> str:
    """Colour at position ``t`` in [0, 1] along :data:`PALETTE`."""
    t = min(1.0, max(0.0, t)) * (len(PALETTE) - 1)
    i = min(int(t), len(PALETTE) - 2)
    frac = t - i
    a, b = _rgb(PALETTE[i]), _rgb(PALETTE[i + 1])
    return _hex([x + (y - x) * frac for x, y in zip(a, b, strict=True)])


def angle_degrees(vector: Sequence[float]) -> float:
    """Angle of a 2-task preference from the task-1 axis, in degrees (0 = favour task 2)."""
    return math.degrees(math.atan2(float(vector[1]), float(vector[0])))


def preference_colours(vectors: dict[int, Sequence[float]]) -> dict[int, str]:
    """Preference id → colour; neighbouring directions get neighbouring colours."""
    if not vectors:
        return {}

    def order(item: tuple[int, Sequence[float]]) -> tuple[float, ...]:
        pref_id, vec = item
        if len(vec) == 2:
            return (angle_degrees(vec), pref_id)
        norm = sum(float(x) for x in vec) or 1.0
        return (*(-float(x) / norm for x in vec), pref_id)

    ordered = sorted(vectors.items(), key=order)
    n = len(ordered)
    return {pid: ramp(i / (n - 1) if n > 1 else 0.5) for i, (pid, _) in enumerate(ordered)}
