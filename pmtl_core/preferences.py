"""Preference vectors: the one home of designs, validation and conventions.

Convention (DESIGN.md): a preference vector ``u`` is a *direction in loss space*, as in
Pareto MTL. The solution for ``u`` has its loss vector in ``u``'s sector (Pareto MTL) or on
``u``'s ray (EPO), so ``u = (1, 0)`` accepts a high loss on task 1 and favours task 2.

>>> uniform(2, 3).round(decimals=4)
tensor([[1.0000, 0.0000],
        [0.7071, 0.7071],
        [0.0000, 1.0000]])
>>> to_weights(torch.tensor([1.0, 0.0]))
tensor([0., 1.])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "MAX_PREFERENCES",
    "das_dennis",
    "normalise",
    "resolve",
    "to_weights",
    "uniform",
    "validate",
]

#: Upper bound on the number of preference vectors of one run (API and CLI enforce it).
MAX_PREFERENCES = 256


def uniform(m: int, k: int, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """``k`` well-spread unit-norm preference vectors for ``m`` tasks, shape ``(k, m)``.

    Two tasks: ``(cos t, sin t)`` with ``t`` evenly spaced in ``[0, pi/2]`` as in the Pareto MTL
    paper. More tasks: the Das–Dennis simplex lattice with the largest number of divisions that
    gives at least ``k`` points, thinned to ``k`` by greedy farthest-point selection (corners
    first), then normalised to unit length.
    """
    if not isinstance(m, int) or m < 1:
        raise ValueError(f"number of tasks m must be a positive integer, got {m!r}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"number of preference vectors k must be a positive integer, got {k!r}")
    if k > MAX_PREFERENCES:
        raise ValueError(f"at most {MAX_PREFERENCES} preference vectors are supported, got {k}")
    if m == 1:
        if k != 1:
            raise ValueError("a single task has exactly one preference vector (k must be 1)")
        return torch.ones(1, 1, dtype=dtype)
    if m == 2:
        if k == 1:
            t = torch.tensor([math.pi / 4], dtype=torch.float64)
        else:
            t = torch.linspace(0.0, math.pi / 2, k, dtype=torch.float64)
        return torch.stack([torch.cos(t), torch.sin(t)], dim=1).clamp_min(0).to(dtype)
    if k == 1:
        return normalise(torch.ones(1, m, dtype=dtype))
    divisions = 1
    while _lattice_size(m, divisions) < k:
        divisions += 1
    lattice = das_dennis(m, divisions)
    chosen = _farthest_points(lattice, k)
    return normalise(chosen).to(dtype)


def das_dennis(m: int, divisions: int) -> Tensor:
    """All points of the simplex lattice ``{w >= 0, sum w = 1, w * divisions integer}``, (N, m)."""
    if m < 1 or divisions < 0:
        raise ValueError(f"need m >= 1 and divisions >= 0, got m={m}, divisions={divisions}")
    points = [
        [(b - a - 1) / divisions if divisions else 1.0 for a, b in itertools.pairwise(bars)]
        for bars in (
            (-1, *combo, divisions + m - 1)
            for combo in itertools.combinations(range(divisions + m - 1), m - 1)
        )
    ]
    return torch.tensor(points, dtype=torch.float64)


def normalise(v: Tensor) -> Tensor:
    """Scale each row of ``v`` to unit Euclidean length (rows must be non-zero)."""
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)


def validate(
    v: Tensor | Sequence[Sequence[float]] | Sequence[float], m: int | None = None
) -> Tensor:
    """Check preference vectors and return them as a float tensor of unit rows, shape (k, m).

    Accepts one vector ``(m,)`` or a batch ``(k, m)``. Raises ``ValueError`` naming the bad row
    for NaN, infinite, negative or all-zero entries, a wrong length, or an empty batch; the
    message lists every bad row, numbered from 1.
    """
    t = torch.as_tensor(v, dtype=torch.float64) if not isinstance(v, Tensor) else v.double()
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise ValueError(
            f"preference vectors must have shape (m,) or (k, m), got shape {tuple(t.shape)}"
        )
    if t.shape[0] == 0:
        raise ValueError("at least one preference vector is required")
    if t.shape[0] > MAX_PREFERENCES:
        raise ValueError(
            f"at most {MAX_PREFERENCES} preference vectors are supported, got {t.shape[0]}"
        )
    if m is not None and t.shape[1] != m:
        raise ValueError(
            f"each preference vector must have length {m} (one entry per task), "
            f"got length {t.shape[1]}"
        )
    if t.shape[1] == 0:
        raise ValueError("preference vectors must have at least one entry")
    problems = []  # every bad row, numbered from 1 as a person counts them
    for i, row in enumerate(t, start=1):
        if torch.isnan(row).any():
            problems.append(f"preference vector {i} contains NaN: {row.tolist()}")
        elif torch.isinf(row).any():
            problems.append(f"preference vector {i} contains an infinite value: {row.tolist()}")
        elif (row < 0).any():
            problems.append(
                f"preference vector {i} has a negative entry: {row.tolist()} "
                "(preferences are directions in the positive orthant)"
            )
        elif not (row > 0).any():
            problems.append(f"preference vector {i} is all zeros; at least one entry must be > 0")
    if problems:
        raise ValueError("; ".join(problems))
    return normalise(t).float()


def resolve(preferences: int | Tensor | Sequence[Sequence[float]], m: int) -> Tensor:
    """A count becomes ``uniform(m, count)``; vectors are validated. Returns ``(K, m)``."""
    if isinstance(preferences, bool):
        raise ValueError("preferences must be a count or a (K, m) array of vectors")
    if isinstance(preferences, int):
        return uniform(m, preferences)
    return validate(preferences, m)


def to_weights(u: Tensor) -> Tensor:
    """Scalarisation weights ``w`` (rows on the simplex) for loss-space directions ``u``.

    A solution whose loss vector lies on the ray of ``u`` balances ``w_i L_i``, so ``w_i`` is
    proportional to ``1 / u_i`` (EPO's ``r``), computed as ``min(u) / u_i`` so that tiny entries
    neither overflow nor underflow. Rows with zero entries take the limit: the weight is shared
    equally among the zero entries, so ``u = (1, 0)`` gives ``w = (0, 1)``. For two unit
    vectors this is ``(u_2, u_1) / (u_1 + u_2)``.
    """
    u = u.clamp_min(0)
    zeros = u == 0
    has_zero = zeros.any(-1, keepdim=True)
    smallest = torch.where(zeros, torch.full_like(u, float("inf")), u).amin(-1, keepdim=True)
    ratios = torch.where(zeros, torch.zeros_like(u), smallest / torch.where(zeros, 1.0, u))
    inverse = ratios / ratios.sum(-1, keepdim=True).clamp_min(torch.finfo(u.dtype).tiny)
    at_zeros = zeros.to(u.dtype) / zeros.sum(-1, keepdim=True).clamp_min(1)
    return torch.where(has_zero, at_zeros, inverse)


def _lattice_size(m: int, divisions: int) -> int:
    return math.comb(divisions + m - 1, m - 1)


def _farthest_points(points: Tensor, k: int) -> Tensor:
    """Greedy farthest-point subset of ``points`` of size ``k``, starting from the corners."""
    n, m = points.shape
    if k >= n:
        return points
    corners = [int(torch.argmax(points[:, i])) for i in range(m)]
    chosen = list(dict.fromkeys(corners))[:k]
    dist = torch.cdist(points, points[chosen]).min(dim=1).values
    while len(chosen) < k:
        nxt = int(torch.argmax(dist))
        chosen.append(nxt)
        dist = torch.minimum(dist, torch.linalg.vector_norm(points - points[nxt], dim=1))
    return points[sorted(chosen)]
