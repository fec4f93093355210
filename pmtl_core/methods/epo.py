"""EPO: Exact Pareto Optimal search, landing each solution on its preference ray.

Mahapatra & Rajan, "Multi-Task Learning with User Preferences: Gradient Descent with Controlled
Ascent in Pareto Optimization", ICML 2020. EPO's preference ``r`` asks for ``r_i L_i`` to be equal;
in this library's convention (``L`` parallel to ``u``) that is ``r_i ∝ 1/u_i``
with ``u_i`` floored at ``r_min * max(u)`` so that preferences with zero entries stay well
defined. Each step solves a small LP over the simplex on the Gram
matrix ``C = G G^T``:

- *balance* mode, when the non-uniformity ``mu = KL(r⊙L / sum(r⊙L) || 1/m)`` exceeds ``eps``:
  maximise ``β^T C a`` (``a`` the direction that reduces ``mu``), keeping the tasks with
  ``(Ca)_j <= 0`` from ascending faster than the adjustment needs and never letting the worst
  relative loss ``argmax r⊙L`` ascend;
- *descent* mode otherwise: maximise ``1^T C β`` subject to ``C β >= 0`` (no task ascends) and
  ``β^T C a >= min(max(Ca), 0)`` (the balance does not degrade).

The LPs of all K subproblems are solved together, exactly (:mod:`pmtl_core.methods._lp`). When
an LP is infeasible the step falls back to the linear scalarisation with weights ``r``, as the
reference implementation does.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from pmtl_core.methods._base import Method, MethodParams
from pmtl_core.methods._common import to_task_scale
from pmtl_core.methods._lp import simplex_lp

__all__ = ["EPO", "EPOParams"]


class EPOParams(MethodParams):
    """Hyperparameters of EPO search."""

    eps: float = Field(1e-4, gt=0.0, description="non-uniformity below which EPO descends")
    r_min: float = Field(
        1e-2, gt=0.0, lt=1.0, description="floor of each preference entry relative to the largest"
    )


class EPO(Method):
    """Exact Pareto optimal search (Mahapatra & Rajan 2020), K subproblems at once."""

    name = "epo"
    summary = "Controlled ascent that lands each solution exactly on its preference ray."
    Params = EPOParams

    def ratios(self) -> Tensor:
        """EPO's ``r (K, m)``: ``r_i ∝ 1 / max(u_i, r_min · max(u))``, rows summing to 1.

        Flooring ``u`` (rather than taking the exact limit) keeps the ratios among the non-zero
        entries: ``u = (0, 3, 1)`` still asks for ``L_2 = 3 L_3`` while ``L_1`` is driven to 0.
        """
        u = self.preferences
        r = 1.0 / torch.maximum(u, self.params.r_min * u.amax(-1, keepdim=True))
        return r / r.sum(-1, keepdim=True)

    def forward(self, losses: Tensor, gram: Tensor | None) -> Tensor:
        assert gram is not None
        m = self.n_tasks
        dt = torch.float64
        r = self.ratios().to(dt)
        c = gram.to(dt)
        c = c / torch.diagonal(c, dim1=-2, dim2=-1).amax(-1)[..., None, None].clamp_min(1e-300)
        rl = r * losses.to(dt).clamp_min(0)
        l_hat = (rl / rl.sum(-1, keepdim=True).clamp_min(1e-300)).clamp_min(1e-30)
        mu = (l_hat * torch.log(m * l_hat)).sum(-1, keepdim=True)
        a = r * (torch.log(m * l_hat) - mu)
        ca = (c @ a.unsqueeze(-1)).squeeze(-1)  # (K, m)
        inf = torch.tensor(float("inf"), dtype=dt, device=c.device)
        # balance mode: rows C β >= rhs, with tasks in J (Ca > 0) free and J* never ascending
        in_j = ca > 0
        worst = torch.nn.functional.one_hot(rl.argmax(-1), m).bool()
        rhs_bal = torch.where(in_j, -inf, ca)
        rhs_bal = torch.where(in_j.any(-1, keepdim=True), rhs_bal, torch.zeros_like(ca))
        rhs_bal = torch.where(worst, torch.zeros_like(ca), rhs_bal)
        # descent mode: rows C β >= 0 and (Ca)^T β >= min(max(Ca), 0)
        rhs_dom = torch.zeros_like(ca)
        extra = ca.amax(-1, keepdim=True).clamp_max(0)
        balance = (mu > self.params.eps).squeeze(-1)
        rows = torch.cat([c, ca.unsqueeze(-2)], dim=-2)
        rhs = torch.where(
            balance.unsqueeze(-1),
            torch.cat([rhs_bal, torch.full_like(extra, -float("inf"))], dim=-1),
            torch.cat([rhs_dom, extra], dim=-1),
        )
        objective = torch.where(balance.unsqueeze(-1), ca, c.sum(-1))
        beta, feasible = simplex_lp(objective, rows, rhs)
        fallback = r / r.sum(-1, keepdim=True)
        beta = torch.where(feasible.unsqueeze(-1), beta, fallback)
        return to_task_scale(beta).to(losses.dtype)
