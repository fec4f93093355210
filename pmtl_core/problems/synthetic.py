"""Synthetic problems with analytic Pareto fronts, for tests, demos and benchmarks.

- ``concave``: the two-objective example of the Pareto MTL paper (Lin et al. 2019, sec. 5.1),
  ``f1 = 1 - exp(-sum_i (x_i - 1/sqrt(d))^2)``, ``f2 = 1 - exp(-sum_i (x_i + 1/sqrt(d))^2)``,
  ``d = 20``. Its Pareto set is the segment ``x = t/sqrt(d) * 1``, ``t in [-1, 1]``, so the front
  is ``(1 - exp(-(1 - t)^2), 1 - exp(-(1 + t)^2))``: concave, which linear scalarisation
  cannot cover.
- ``concave_unbalanced``: the same with the objectives scaled by ``(1, 10)``, so the tasks'
  losses and gradients differ by an order of magnitude.
- ``sphere3``: a DTLZ2-like three-objective problem on ``[0, 1]^7`` whose front is the unit
  sphere's positive octant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from pmtl_core.preferences import das_dennis, validate
from pmtl_core.problems.function import FunctionProblem

__all__ = ["ConcaveProblem", "SphereProblem"]


class ConcaveProblem(FunctionProblem):
    """The Pareto MTL paper's concave two-objective problem, optionally with scaled objectives."""

    def __init__(
        self, dim: int = 20, scales: Sequence[float] = (1.0, 1.0), *, name: str = "concave"
    ) -> None:
        if len(scales) != 2 or min(scales) <= 0:
            raise ValueError(f"scales must be two positive numbers, got {scales!r}")
        self.scales = torch.tensor([float(s) for s in scales])
        centre = 1.0 / math.sqrt(dim)
        s1, s2 = (float(s) for s in scales)

        def fn(x: Tensor) -> Tensor:
            f1 = 1 - torch.exp(-((x - centre) ** 2).sum())
            f2 = 1 - torch.exp(-((x + centre) ** 2).sum())
            return torch.stack([s1 * f1, s2 * f2])

        super().__init__(fn, dim, name=name, task_names=("f1", "f2"), init_range=(-0.5, 0.5))

    def _front_at(self, t: Tensor) -> Tensor:
        f = torch.stack([1 - torch.exp(-((1 - t) ** 2)), 1 - torch.exp(-((1 + t) ** 2))], dim=-1)
        return f * self.scales.to(f)

    def pareto_front(self, n: int = 200) -> Tensor:
        """``n`` front points ``(n, 2)`` sorted by the first objective."""
        return self._front_at(torch.linspace(1.0, -1.0, n, dtype=torch.float64)).float()

    def front_point_on_ray(self, u: Tensor) -> Tensor:
        """Front point on each ray ``u (k, 2)``: bisection on ``t`` (the angle is monotone)."""
        u = validate(u, 2).double()
        target = torch.atan2(u[:, 1], u[:, 0])
        lo = torch.full_like(target, -1.0)  # t = -1: f2 = 0, angle 0
        hi = torch.full_like(target, 1.0)  # t = +1: f1 = 0, angle pi/2
        for _ in range(60):
            mid = (lo + hi) / 2
            f = self._front_at(mid)
            ang = torch.atan2(f[:, 1], f[:, 0])
            go_up = ang < target  # the angle grows with t, from 0 at t = -1 to pi/2 at t = 1
            lo = torch.where(go_up, mid, lo)
            hi = torch.where(go_up, hi, mid)
        return self._front_at((lo + hi) / 2).float()

    def distance_to_front(self, points: Tensor) -> Tensor:
        """Euclidean distance of each point ``(N, 2)`` to the analytic front (dense sampling)."""
        front = self._front_at(torch.linspace(-1.0, 1.0, 20001, dtype=torch.float64))
        return torch.cdist(points.double(), front).min(dim=1).values


class SphereProblem(FunctionProblem):
    """DTLZ2-like problem with ``m`` objectives on ``[0, 1]^dim``; the front is ``||f|| = 1``.

    ``f = (1 + g) v / ||v||`` with ``v = x[:m]`` and ``g = sum_{i >= m} (x_i - 0.5)^2``: the
    objectives of DTLZ2 (every direction of the positive octant, at distance ``1 + g``), but
    parameterised by a direction vector instead of DTLZ2's angles, whose corners are singular
    (at ``theta_0 = pi/2`` every gradient is parallel and gradient methods get stuck there).
    """

    def __init__(self, n_obj: int = 3, dim: int = 7, *, name: str = "sphere3") -> None:
        if n_obj < 2 or dim < n_obj:
            raise ValueError(f"need n_obj >= 2 and dim >= n_obj, got {n_obj}, {dim}")
        m = n_obj

        def fn(x: Tensor) -> Tensor:
            v = x[:m]
            g = ((x[m:] - 0.5) ** 2).sum()
            return (1 + g) * v / torch.linalg.vector_norm(v).clamp_min(1e-12)

        super().__init__(
            fn,
            dim,
            lower=0.0,
            upper=1.0,
            name=name,
            task_names=tuple(f"f{i + 1}" for i in range(m)),
        )

    def pareto_front(self, n: int = 200) -> Tensor:
        """About ``n`` well-spread points of the octant of the unit sphere."""
        divisions = 1
        while math.comb(divisions + self.n_tasks - 1, self.n_tasks - 1) < n:
            divisions += 1
        pts = das_dennis(self.n_tasks, divisions)
        return (pts / torch.linalg.vector_norm(pts, dim=1, keepdim=True)).float()

    def front_point_on_ray(self, u: Tensor) -> Tensor:
        return validate(u, self.n_tasks)

    def hypervolume_of_front(self, ref: float) -> float:
        """Exact hypervolume of the whole front for the reference point ``(ref, …, ref)``, ref >= 1:
        the box minus the unit ball's positive orthant."""
        if ref < 1:
            raise ValueError("the closed form needs ref >= 1")
        m = self.n_tasks
        ball = math.pi ** (m / 2) / math.gamma(m / 2 + 1) / 2**m
        return ref**m - ball
