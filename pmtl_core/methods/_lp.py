"""A small batched linear program over the simplex, solved exactly by vertex enumeration.

``maximise c^T x  s.t.  x >= 0, sum(x) = 1, A x >= b`` for a batch of problems with ``m``
variables and ``R`` general rows (a row whose ``b`` is ``-inf`` is switched off). The optimum of a
bounded, feasible LP is attained at a vertex, and every vertex makes ``m - 1`` inequality rows
tight besides the equality, so all ``C(m + R, m - 1)`` candidate systems are solved at once and
the best feasible one is kept. That is exact and cheap for the few tasks of multi-task learning
(21 systems for 3 tasks, 330 for 5) and is refused beyond ``MAX_TASKS``.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["MAX_TASKS", "simplex_lp"]

MAX_TASKS = 8
_TOL = 1e-9


@lru_cache(maxsize=32)
def _combos(n_rows: int, k: int) -> tuple[tuple[int, ...], ...]:
    return tuple(itertools.combinations(range(n_rows), k))


def simplex_lp(c: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Solve the batch of LPs; returns ``(x (..., m), feasible (...,))``.

    ``c (..., m)``, ``a (..., R, m)``, ``b (..., R)``. Rows are compared after scaling by their
    largest entry. Infeasible problems get ``feasible = False`` and an arbitrary ``x``.
    """
    m = c.shape[-1]
    if m > MAX_TASKS:
        raise ValueError(f"the simplex LP supports at most {MAX_TASKS} tasks, got {m}")
    dt = torch.float64
    c, a, b = c.to(dt), a.to(dt), b.to(dt)
    batch = c.shape[:-1]
    if m == 1:
        x = torch.ones((*batch, 1), dtype=dt, device=c.device)
        ok = ((a[..., 0] >= b - _TOL) | torch.isinf(b)).all(-1)
        return x, ok
    eye = torch.eye(m, dtype=dt, device=c.device).expand(*batch, m, m)
    rows = torch.cat([eye, a], dim=-2)  # (..., m + R, m)
    rhs = torch.cat([torch.zeros((*batch, m), dtype=dt, device=c.device), b], dim=-1)
    enabled = torch.isfinite(rhs)
    idx = torch.tensor(_combos(rows.shape[-2], m - 1), device=c.device)  # (N, m-1)
    n = idx.shape[0]
    tight = rows[..., idx, :]  # (..., N, m-1, m)
    ones = torch.ones((*batch, n, 1, m), dtype=dt, device=c.device)
    system = torch.cat([tight, ones], dim=-2)  # (..., N, m, m)
    target = torch.cat(
        [
            torch.where(enabled, rhs, 0.0)[..., idx],
            torch.ones((*batch, n, 1), dtype=dt, device=c.device),
        ],
        dim=-1,
    )
    x, info = torch.linalg.solve_ex(system, target.unsqueeze(-1))
    x = x.squeeze(-1)  # (..., N, m)
    usable = (info == 0) & enabled[..., idx].all(-1) & torch.isfinite(x).all(-1)
    scale = rows.abs().amax(-1).clamp_min(1e-300)  # (..., m + R)
    slack = (rows.unsqueeze(-3) @ x.unsqueeze(-1)).squeeze(-1) - rhs.unsqueeze(-2)  # (..., N, m+R)
    ok_rows = (slack >= -_TOL * scale.unsqueeze(-2)) | ~enabled.unsqueeze(-2)
    usable = usable & ok_rows.all(-1)
    value = (x * c.unsqueeze(-2)).sum(-1).masked_fill(~usable, float("-inf"))
    best = value.argmax(-1)
    x_best = torch.gather(x, -2, best[..., None, None].expand(*batch, 1, m)).squeeze(-2)
    feasible = usable.any(-1)
    return x_best.clamp_min(0), feasible
