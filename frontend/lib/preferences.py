"""Preference vectors on the client: even designs, validation of edited tables, in-between rays.

Mirrors the library's conventions without importing it: a preference vector is a direction in
loss space, unit length, non-negative, not all zero. Two tasks: evenly spread on the quarter
circle; more tasks: a Das–Dennis simplex lattice thinned by farthest-point selection.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "MAX_PREFERENCES",
    "between",
    "from_angle",
    "from_table",
    "near",
    "spread_evenly",
    "to_table",
    "unit",
    "validate_rows",
]

MAX_PREFERENCES = 256


def unit(vector: Sequence[float]) -> list[float]:
    """``vector`` scaled to unit Euclidean length (must be non-zero)."""
    v = np.asarray(vector, dtype=float)
    return (v / np.linalg.norm(v)).tolist()


def from_angle(degrees: float) -> list[float]:
    """The 2-task direction at ``degrees`` from the task-1 axis (0° favours task 2)."""
    t = math.radians(min(90.0, max(0.0, float(degrees))))
    return [max(0.0, math.cos(t)), max(0.0, math.sin(t))]


def _lattice(m: int, divisions: int) -> np.ndarray:
    rows = []
    for combo in itertools.combinations(range(divisions + m - 1), m - 1):
        bars = (-1, *combo, divisions + m - 1)
        rows.append([(b - a - 1) / divisions for a, b in itertools.pairwise(bars)])
    return np.asarray(rows, dtype=float)


def _farthest(points: np.ndarray, k: int) -> np.ndarray:
    n, m = points.shape
    if k >= n:
        return points
    chosen = list(dict.fromkeys(int(np.argmax(points[:, i])) for i in range(m)))[:k]
    dist = np.min(np.linalg.norm(points[:, None, :] - points[None, chosen, :], axis=-1), axis=1)
    while len(chosen) < k:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
    return points[sorted(chosen)]


def spread_evenly(m: int, k: int) -> list[list[float]]:
    """``k`` well-spread unit preference vectors for ``m`` tasks."""
    if m < 1 or k < 1:
        raise ValueError("need at least one task and one preference vector")
    if k > MAX_PREFERENCES:
        raise ValueError(f"at most {MAX_PREFERENCES} preference vectors are supported, got {k}")
    if m == 1:
        return [[1.0]]
    if m == 2:
        angles = [45.0] if k == 1 else [90.0 * i / (k - 1) for i in range(k)]
        return [from_angle(a) for a in angles]
    if k == 1:
        return [unit([1.0] * m)]
    divisions = 1
    while math.comb(divisions + m - 1, m - 1) < k:
        divisions += 1
    chosen = _farthest(_lattice(m, divisions), k)
    return [unit(row) for row in chosen]


def validate_rows(rows: Sequence[Sequence[object]], m: int) -> tuple[list[list[float]], list[str]]:
    """Check edited rows; return the valid ones as unit vectors and one message per bad row.

    Rows are numbered from 1 in messages, as in the table the user edits. Completely empty
    rows (a new, untouched table row) are ignored.
    """
    vectors: list[list[float]] = []
    errors: list[str] = []
    for i, row in enumerate(rows, start=1):
        cells = list(row)
        if all(c is None or (isinstance(c, float) and math.isnan(c)) for c in cells):
            continue
        if len(cells) != m:
            errors.append(f"row {i}: needs {m} values (one per task), got {len(cells)}")
            continue
        try:
            values = [float(c) for c in cells]  # type: ignore[arg-type]
        except (TypeError, ValueError):
            errors.append(f"row {i}: every entry must be a number")
            continue
        if any(math.isnan(v) for v in values):
            errors.append(f"row {i}: has an empty entry")
        elif any(math.isinf(v) for v in values):
            errors.append(f"row {i}: has an infinite entry")
        elif any(v < 0 for v in values):
            errors.append(f"row {i}: has a negative entry (directions lie in the positive orthant)")
        elif not any(v > 0 for v in values):
            errors.append(f"row {i}: is all zeros; at least one entry must be positive")
        else:
            vectors.append(unit(values))
    if len(vectors) > MAX_PREFERENCES:
        errors.append(f"at most {MAX_PREFERENCES} preference vectors, got {len(vectors)}")
    return vectors, errors


def to_table(vectors: Sequence[Sequence[float]], task_names: Sequence[str]) -> pd.DataFrame:
    """Vectors as an editable table, one column per task."""
    data = [[float(x) for x in v] for v in vectors]
    return pd.DataFrame(data, columns=list(task_names), dtype=float)


def from_table(table: pd.DataFrame) -> list[list[object]]:
    """Rows of an edited table (cells may be ``None``/NaN where the user left them empty)."""
    return [list(row) for row in table.itertuples(index=False, name=None)]


def between(u: Sequence[float], v: Sequence[float], n: int = 1) -> list[list[float]]:
    """``n`` directions evenly spaced strictly between ``u`` and ``v`` (by angle for 2 tasks)."""
    a, b = np.asarray(unit(u)), np.asarray(unit(v))
    out = []
    for i in range(1, n + 1):
        t = i / (n + 1)
        if len(a) == 2:
            angle = (1 - t) * math.atan2(a[1], a[0]) + t * math.atan2(b[1], b[0])
            out.append(from_angle(math.degrees(angle)))
        else:
            out.append(unit((1 - t) * a + t * b))
    return out


def near(
    selected: Sequence[float], others: Sequence[Sequence[float]], n: int = 2
) -> list[list[float]]:
    """Directions half-way from ``selected`` to its ``n`` angularly nearest other vectors."""
    s = np.asarray(unit(selected))
    candidates = [np.asarray(unit(o)) for o in others if not np.allclose(unit(o), s)]
    candidates.sort(key=lambda o: -float(np.dot(o, s)))
    if len(s) == 2:
        side = [c for c in candidates if c[1] > s[1]][:1] + [c for c in candidates if c[1] < s[1]][
            :1
        ]
        candidates = side or candidates[:n]
    return [between(s, c, 1)[0] for c in candidates[:n]]
