"""Pareto MTL: one constrained subproblem per preference vector, solved by gradient descent.

Lin, Zhen, Li, Zhang & Kwong, "Pareto Multi-Task Learning", NeurIPS 2019 (Algorithm 1).
The preference vectors ``u_1 … u_P`` cut loss space into sectors; subproblem ``k`` minimises
``L(θ)`` subject to ``G_j(θ) = (u_j - u_k)^T L̂(θ) <= 0`` for every ``j != k`` (``L̂ = L/||L||``: the
loss vector points into ``u_k``'s sector). Two phases per subproblem:

- **init**: from a random start, descend on the active constraints only (``G_j >= -eps``) along
  the min-norm direction of their gradients ``∇G_j = (u_j - u_k)^T ∇L``, until no constraint is
  violated or ``init_steps`` iterations have passed;
- **main**: solve the min-norm problem over the ``m`` task gradients plus the active constraint
  gradients; with multipliers ``λ`` (tasks) and ``β`` (constraints) the step is
  ``d = sum_i α_i ∇L_i`` with ``α_i = λ_i + sum_j β_j (u_ji - u_ki)``.

Everything is batched: the ``m + P`` candidate gradients of every subproblem are linear
combinations of its ``m`` task gradients, so one ``(K, m, m)`` Gram matrix gives all of them
(``C G C^T`` with ``C = [I; u_j - u_k]``) and one masked, batched min-norm call serves all K
subproblems in either phase. Weights are returned on the summed-loss scale (``sum |α| = m``),
which reproduces the reference implementation's ``2 / sum |α|`` scaling for two tasks.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from pmtl_core.methods._base import GradTarget, Method, MethodParams
from pmtl_core.methods._common import (
    Normalization,
    gradient_scales,
    to_task_scale,
)
from pmtl_core.solvers import min_norm_gram

__all__ = ["ParetoMTL", "ParetoMTLParams"]


class ParetoMTLParams(MethodParams):
    """Hyperparameters of Pareto MTL."""

    eps: float = Field(
        0.0, ge=0.0, le=1.0, description="constraints with G_j >= -eps count as active"
    )
    init_steps: int = Field(
        200, ge=0, description="iteration budget of the init phase (per subproblem)"
    )
    normalization: Normalization = Field(
        "none", description="task-gradient normalisation before the min-norm problem"
    )
    grad_wrt: GradTarget = Field(
        "shared",
        description="take task gradients w.r.t. all shared parameters (exact) or the shared "
        "representation (MGDA-UB style: cheaper, about one forward and backward per step)",
    )


class ParetoMTL(Method):
    """Pareto MTL (Lin et al. 2019), K subproblems at once."""

    name = "pareto_mtl"
    summary = "One constrained subproblem per preference sector: a well-spread Pareto front."
    Params = ParetoMTLParams
    _state: ClassVar[tuple[str, ...]] = ("feasible",)

    def __init__(self, preferences: Tensor, params=None, *, all_preferences=None) -> None:
        super().__init__(preferences, params, all_preferences=all_preferences)
        k, m = self.n_subproblems, self.n_tasks
        # c[k, j] = u_j - u_k over every preference of the run; j == k (zero rows) never counts
        diffs = self.all_preferences.unsqueeze(0) - self.preferences.unsqueeze(1)
        self.constraint_dirs = diffs
        self.constraint_valid = torch.linalg.vector_norm(diffs, dim=-1) > 1e-6
        eye = torch.eye(m, dtype=diffs.dtype, device=diffs.device).expand(k, m, m)
        self.combos = torch.cat([eye, diffs], dim=1)  # (K, m + P, m)
        self.feasible = torch.zeros(k, dtype=torch.bool, device=diffs.device)

    def constraints(self, losses: Tensor) -> Tensor:
        """``G (K, P)``: the constraint values of each subproblem (invalid entries are -inf)."""
        direction = losses / torch.linalg.vector_norm(losses, dim=-1, keepdim=True).clamp_min(1e-12)
        g = torch.einsum("kpm,km->kp", self.constraint_dirs.to(losses.dtype), direction)
        return g.masked_fill(~self.constraint_valid, float("-inf"))

    def forward(self, losses: Tensor, gram: Tensor | None) -> Tensor:
        assert gram is not None
        m = self.n_tasks
        g_val = self.constraints(losses)
        active = g_val >= -self.params.eps
        # Leave the init phase once nothing is violated, or when its budget is spent.
        out_of_budget = self.step_count >= self.params.init_steps
        self.feasible = self.feasible | ~(g_val > 0).any(-1) | out_of_budget
        scales = gradient_scales(gram, losses, self.params.normalization)
        combos = self.combos.to(gram.dtype) / scales.unsqueeze(-2)  # columns act on g_i / c_i
        big_gram = combos @ gram @ combos.transpose(-1, -2)  # (K, m + P, m + P)
        tasks = self.feasible.unsqueeze(-1).expand(-1, m)
        mask = torch.cat([tasks, active], dim=-1)
        w = min_norm_gram(big_gram, mask, check_every=2, validate=False)
        alpha = (w.unsqueeze(-1) * combos).sum(-2)  # (K, m): coefficients of the raw g_i
        return to_task_scale(alpha)

    @property
    def in_init_phase(self) -> Tensor:
        """``(K,)`` bool: which subproblems are still looking for a feasible start."""
        return ~self.feasible

    def to(self, device: torch.device | str) -> ParetoMTL:
        super().to(device)
        self.constraint_dirs = self.constraint_dirs.to(device)
        self.constraint_valid = self.constraint_valid.to(device)
        self.combos = self.combos.to(device)
        return self
