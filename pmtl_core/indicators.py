"""Quality indicators of a front (minimisation): non-dominated filter, hypervolume, IGD, spread.

Plain functions that accept torch tensors (any device), numpy arrays or nested lists of shape
``(N, m)``: ``N`` points, ``m`` objectives, every objective minimised. Scalars come back as
Python floats, the non-dominated mask as a torch bool tensor, so results are easy to log.
Hypervolume is exact: a sort-and-sweep for two objectives, a sweep over the third objective
keeping a two-dimensional staircase for three, and ``moocore`` beyond that.

>>> import torch
>>> pts = torch.tensor([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [3.0, 3.0]])
>>> non_dominated(pts)
tensor([ True,  True,  True, False])
>>> hypervolume(pts, ref=[4.0, 4.0])
6.0
>>> igd(pts[:3], front=pts[:3])
0.0
>>> spacing(pts[:3])
0.0
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import moocore
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DATASET_REFERENCE",
    "hypervolume",
    "igd",
    "igd_plus",
    "non_dominated",
    "reference_point",
    "spacing",
    "spread",
]

ArrayLike = Tensor | np.ndarray | Sequence[Sequence[float]]

#: Per-task reference value for data-set problems without their own reference point (losses of
#: well-trained classifiers are far below 2).
DATASET_REFERENCE = 2.0

# Upper bound on the elements of one (chunk, N, m) comparison block in non_dominated.
_BLOCK_ELEMENTS = 1 << 22


def non_dominated(points: ArrayLike) -> Tensor:
    """Bool mask ``(N,)``: True where no other point dominates the point (minimisation).

    ``a`` dominates ``b`` when ``a <= b`` everywhere and ``a < b`` somewhere, so equal points
    do not dominate each other and every copy of a non-dominated point is kept. The mask is on
    the device of a tensor input (CPU otherwise); an empty input gives an empty mask.
    """
    p = _as_tensor(points, "points")
    n = p.shape[0]
    dominated = torch.zeros(n, dtype=torch.bool, device=p.device)
    if n == 0:
        return dominated
    chunk = max(1, _BLOCK_ELEMENTS // max(1, n * p.shape[1]))
    others = p.unsqueeze(0)
    for start in range(0, n, chunk):
        cand = p[start : start + chunk].unsqueeze(1)
        weakly_better = (others <= cand).all(-1)
        strictly_somewhere = (others < cand).any(-1)
        dominated[start : start + chunk] = (weakly_better & strictly_somewhere).any(-1)
    return ~dominated


def hypervolume(points: ArrayLike, ref: ArrayLike) -> float:
    """Exact volume dominated by ``points (N, m)`` and bounded by ``ref (m,)`` (minimisation).

    Only points strictly better than ``ref`` in every objective contribute; an empty set, or
    one with no such point, gives 0.0. One objective: ``max(0, ref - min)``. A point at
    ``-inf`` in some objective (and below ``ref`` elsewhere) gives ``inf``.
    """
    p = _as_array(points, "points")
    r = _as_array(ref, "ref", ndim=1)
    if r.shape[0] == 0:
        raise ValueError("ref must have at least one coordinate (one per objective)")
    if p.shape[0] == 0 and p.shape[1] == 0:
        p = p.reshape(0, r.shape[0])
    if p.shape[1] != r.shape[0]:
        raise ValueError(
            f"ref has {r.shape[0]} coordinates but points have {p.shape[1]} objectives"
        )
    if not np.isfinite(r).all():
        raise ValueError(f"ref must be finite, got {r.tolist()}")
    p = p[(p < r).all(axis=1)]
    if p.shape[0] == 0:
        return 0.0
    if np.isneginf(p).any():
        return math.inf
    m = r.shape[0]
    if m == 1:
        return float(r[0] - p[:, 0].min())
    if m == 2:
        return _hv2(p, r)
    if m == 3:
        return _hv3(p, r)
    return float(moocore.hypervolume(p, ref=r))


def reference_point(
    kind: str,
    n_tasks: int,
    declared: Sequence[float] | None,
    losses: Sequence[Sequence[float | None]],
) -> list[float] | None:
    """The hypervolume reference point the service uses when the client gives none.

    In order: the problem's own (``declared``, of length ``n_tasks``); ``(2.0, …, 2.0)`` for
    data-set problems (``kind == "dataset"``); for function problems the component-wise
    maximum of the finite rows of ``losses``, pushed out by 10 % of its magnitude (at least
    1e-6) so the worst point still contributes. ``None`` when no finite row is left.
    """
    if declared is not None and len(declared) == n_tasks:
        return [float(v) for v in declared]
    if kind == "dataset":
        return [DATASET_REFERENCE] * n_tasks
    rows = [
        [float(x) for x in row]
        for row in losses
        if len(row) == n_tasks and all(isinstance(x, int | float) and math.isfinite(x) for x in row)
    ]
    if not rows:
        return None
    worst = [max(row[i] for row in rows) for i in range(n_tasks)]
    return [w + max(0.1 * abs(w), 1e-6) for w in worst]


def igd(points: ArrayLike, front: ArrayLike) -> float:
    """Inverted generational distance: mean over ``front`` of the distance to the nearest point.

    Euclidean distance, ``front (R, m)`` a reference front, ``points (N, m)`` the approximation.
    An empty ``points`` gives ``inf`` (nothing approximates the front); an empty ``front`` is a
    ``ValueError`` (there is nothing to measure against).
    """
    p, f = _pair(points, front)
    if p.shape[0] == 0:
        return math.inf
    diff = f[:, None, :] - p[None, :, :]
    return float(np.sqrt((diff**2).sum(-1)).min(axis=1).mean())


def igd_plus(points: ArrayLike, front: ArrayLike) -> float:
    """IGD+ (Ishibuchi et al., 2015): IGD with only the objectives where a point is worse.

    For a front point ``z`` and a point ``a`` the distance is ``||max(a - z, 0)||``, which makes
    the indicator weakly Pareto compliant. Same empty-input rules as :func:`igd`.
    """
    p, f = _pair(points, front)
    if p.shape[0] == 0:
        return math.inf
    worse = np.maximum(p[None, :, :] - f[:, None, :], 0.0)
    return float(np.sqrt((worse**2).sum(-1)).min(axis=1).mean())


def spacing(points: ArrayLike) -> float:
    """Schott's spacing: sample standard deviation of nearest-neighbour L1 distances.

    ``d_i = min_{j != i} sum_k |p_ik - p_jk|`` and the result is
    ``sqrt(sum_i (d_i - mean d)^2 / (N - 1))``; 0 means evenly spaced. Fewer than two points
    give 0.0 (no gaps to compare).
    """
    p = _as_array(points, "points")
    if p.shape[0] < 2:
        return 0.0
    return float(np.std(_nearest(p, p_norm=1), ddof=1))


def spread(points: ArrayLike, front: ArrayLike | None = None) -> float:
    """Deb's spread ``Delta`` (2 objectives) or its nearest-neighbour generalisation (m > 2).

    Two objectives (Deb et al., NSGA-II, 2002): the points are sorted by the first objective,
    ``d_i`` are the ``N - 1`` gaps between neighbours, and ``d_f``, ``d_l`` the distances from
    the first and last point to the extremes of ``front`` (its points with the largest second
    and the largest first objective):
    ``Delta = (d_f + d_l + sum |d_i - mean d|) / (d_f + d_l + (N - 1) mean d)``.
    More objectives (Zhou et al.'s generalised spread): ``d_i`` is each point's distance to its
    nearest other point (``N`` terms) and the extreme term sums, over objectives ``k``, the
    distance from the front's point with the largest objective ``k`` to the nearest point.
    Without ``front`` the extreme terms are 0. Points are used as given (pass the
    non-dominated ones). A zero denominator (coincident points on the extremes) gives 0.0; an
    empty set gives 1.0 with a front (no point covers the extremes) and 0.0 without.
    """
    p = _as_array(points, "points")
    m = p.shape[1]
    f = None
    if front is not None:
        f = _as_array(front, "front")
        if f.shape[0] == 0:
            raise ValueError("front is empty: pass None to measure spread without extremes")
        if p.shape[0] == 0 and m == 0:
            p = p.reshape(0, f.shape[1])
            m = f.shape[1]
        if f.shape[1] != m:
            raise ValueError(f"front has {f.shape[1]} objectives but points have {m}")
    if m < 2 and p.shape[0] > 0:
        raise ValueError(f"spread needs at least 2 objectives, got {m}")
    if p.shape[0] == 0:
        return 0.0 if f is None else 1.0
    extremes = np.zeros(0) if f is None else f[np.argmax(f, axis=0)]  # row k: largest f_k
    if m == 2:
        order = np.lexsort((-p[:, 1], p[:, 0]))
        p = p[order]
        gaps = np.linalg.norm(np.diff(p, axis=0), axis=1)
        edge = 0.0
        if f is not None:
            edge = float(np.linalg.norm(p[0] - extremes[1]) + np.linalg.norm(p[-1] - extremes[0]))
    else:
        gaps = _nearest(p, p_norm=2) if p.shape[0] > 1 else np.zeros(0)
        edge = 0.0
        if f is not None:
            dist = np.linalg.norm(extremes[:, None, :] - p[None, :, :], axis=-1)
            edge = float(dist.min(axis=1).sum())
    mean = float(gaps.mean()) if gaps.size else 0.0
    numerator = edge + float(np.abs(gaps - mean).sum())
    denominator = edge + gaps.size * mean
    return numerator / denominator if denominator > 0 else 0.0


def _hv2(p: np.ndarray, r: np.ndarray) -> float:
    """Two objectives: sort by the first, each point adds the strip below the running minimum."""
    order = np.lexsort((p[:, 1], p[:, 0]))
    x, y = p[order, 0], p[order, 1]
    best_before = np.concatenate([[r[1]], np.minimum.accumulate(y)[:-1]])
    return float(((r[0] - x) * np.maximum(best_before - y, 0.0)).sum())


def _hv3(p: np.ndarray, r: np.ndarray) -> float:
    """Three objectives: sweep up the third, keeping the 2-D staircase and its area.

    The staircase holds the non-dominated projections seen so far, sorted by x (so y falls).
    Inserting a point adds the area it covers beyond the staircase, computed strip by strip
    over the steps it removes; each point is inserted and removed at most once.
    """
    pts = p[np.argsort(p[:, 2], kind="stable")].tolist()
    rx, ry, rz = (float(v) for v in r)
    xs: list[float] = []
    ys: list[float] = []
    area = 0.0
    volume = 0.0
    for k, (x, y, z) in enumerate(pts):
        left = bisect.bisect_right(xs, x) - 1
        if not (left >= 0 and ys[left] <= y):  # not weakly dominated by the staircase
            i = bisect.bisect_left(xs, x)
            top = ys[i - 1] if i > 0 else ry
            cursor = x
            j = i
            while j < len(xs) and ys[j] >= y:  # steps the new point dominates
                area += (xs[j] - cursor) * (top - y)
                cursor, top = xs[j], ys[j]
                j += 1
            right = xs[j] if j < len(xs) else rx
            area += (right - cursor) * (top - y)
            xs[i:j] = [x]
            ys[i:j] = [y]
        next_z = pts[k + 1][2] if k + 1 < len(pts) else rz
        volume += area * (next_z - z)
    return volume


def _nearest(p: np.ndarray, p_norm: int) -> np.ndarray:
    """Distance from each point to its nearest other point (L1 or L2)."""
    diff = np.abs(p[:, None, :] - p[None, :, :])
    dist = diff.sum(-1) if p_norm == 1 else np.sqrt((diff**2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    return dist.min(axis=1)


def _pair(points: ArrayLike, front: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = _as_array(points, "points")
    f = _as_array(front, "front")
    if f.shape[0] == 0:
        raise ValueError("front is empty: IGD needs at least one reference point")
    if p.shape[0] == 0 and p.shape[1] == 0:
        p = p.reshape(0, f.shape[1])
    if p.shape[1] != f.shape[1]:
        raise ValueError(f"points have {p.shape[1]} objectives but front has {f.shape[1]}")
    return p, f


def _as_tensor(x: ArrayLike, name: str) -> Tensor:
    """A 2-D tensor (device kept) from tensor/array/list input, rejecting NaN."""
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    t = t.detach()
    if t.dim() == 1 and t.numel() == 0:
        t = t.reshape(0, 0)
    if t.dim() != 2:
        raise ValueError(f"{name} must have shape (N, m), got shape {tuple(t.shape)}")
    if t.is_floating_point() and torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN")
    return t


def _as_array(x: ArrayLike, name: str, ndim: int = 2) -> np.ndarray:
    """A float64 numpy array with ``ndim`` dims from tensor/array/list input, rejecting NaN."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if ndim == 2 and a.ndim == 1 and a.size == 0:
        a = a.reshape(0, 0)
    if a.ndim != ndim:
        shape = "(N, m)" if ndim == 2 else "(m,)"
        raise ValueError(f"{name} must have shape {shape}, got shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN")
    return a
