"""Pareto MTL: one constrained subproblem per preference vector, solved by gradient descent.

Lin, Zhen, Li, Zhang & Kwong, "Pareto Multi-Task Learning", NeurIPS 2019 (Algorithm 1).
The preference vectors ``u_1 … u_P`` cut loss space into sectors; subproblem ``k`` minimises
``L(θ)`` subject to ``G_j(θ) = (u_j - u_k)^T L̂(θ) <= 0`` for every ``j != k`` (``L̂ = L/||L||``: the
loss vector points into ``u_k``'s sector). Two phases per subproblem:

- **init**: from a random start, descend on the active constraints only (``G_j >= -eps``) along
  the min-norm direction of their gradients, until no constraint is violated or ``init_steps``
  iterations have passed;
- **main**: solve the min-norm problem over the ``m`` task gradients plus the active constraint
  gradients; with multipliers ``λ`` (tasks) and ``β`` (constraints) the step is
  ``d = sum_i α_i ∇L_i`` with ``α_i = λ_i + sum_j β_j c_ji``.

Three defaults differ from the reference implementation, each with a switch back to it, because
on MultiMNIST its models drift out of their sectors (``bench/multimnist_front.py``):

- ``constraint_grad="angle"``: ``c_j`` is ``(u_j - u_k)`` minus its component along ``L̂``, the
  direction of ``∇_L G_j`` for the normalised constraint. The paper's ``c_j = u_j - u_k``
  (``"paper"``) is also decreased by shrinking every loss alike, which leaves the loss vector
  where it was: progress on the tasks counted as progress on the constraint;
- ``restore=True``: in the main phase a subproblem with a violated constraint steps on its
  constraints alone, as in the init phase, until it is back in its sector, ``margin`` deep
  (with ``margin=0``, as in the paper, the models end on the borders and their test losses
  fall on either side);
- ``ascent=False``: those constraint-only steps never raise a task loss (negative weights are
  cut to zero). The paper's init raises the losses the sector wants larger, and a cross-entropy
  pushed upwards grows without bound and can leave the network dead.

Everything is batched: the ``m + P`` candidate gradients of every subproblem are linear
combinations of its ``m`` task gradients, so one ``(K, m, m)`` Gram matrix gives all of them
(``C G C^T`` with ``C = [I; c_j]``) and one masked, batched min-norm call serves all K
subproblems in either phase. Weights are returned on the summed-loss scale (``sum |α| = m``),
which reproduces the reference implementation's ``2 / sum |α|`` scaling for two tasks.
"""

from __future__ import annotations

from typing import ClassVar, Literal

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
    constraint_grad: Literal["angle", "paper"] = Field(
        "angle",
        description="gradient of G_j: of the angle-only form (u_j - u_k)^T L/||L|| (its "
        "direction, without the 1/||L|| factor) or the paper's (u_j - u_k)^T L, which shrinking "
        "every loss also decreases",
    )
    restore: bool = Field(
        True,
        description="main phase: while a constraint is violated (or within the margin), step "
        "on the constraints alone, as in the init phase, until the subproblem is back inside",
    )
    margin: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="restoration keeps the loss direction this far inside the sector (distance "
        "of L/||L|| from the sector border, about radians; capped at a quarter of the gap "
        "between neighbouring rays) so that the test losses stay in it too",
    )
    ascent: bool = Field(
        False,
        description="let init and restoration steps raise a task loss (the paper's init "
        "does); off, they only lower the losses that must shrink, as losses without an upper "
        "bound (cross-entropy) can blow up under ascent",
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
        # G_j / |c_j| is the distance of L/||L|| from the border with sector j; the margin is
        # capped at a quarter of u_k's own distance from it, so close rays never squeeze it out
        norms = torch.linalg.vector_norm(diffs, dim=-1)
        margin = self.params.margin if self.params.restore else 0.0
        self.margins = torch.minimum(norms * margin, norms * norms / 4)

    def constraints(self, losses: Tensor) -> Tensor:
        """``G (K, P)``: the constraint values of each subproblem (invalid entries are -inf)."""
        direction = _unit(losses)
        g = torch.einsum("kpm,km->kp", self.constraint_dirs.to(losses.dtype), direction)
        return g.masked_fill(~self.constraint_valid, float("-inf"))

    def forward(self, losses: Tensor, gram: Tensor | None) -> Tensor:
        assert gram is not None
        m = self.n_tasks
        g_val = self.constraints(losses)
        combos = self._combos(losses, g_val)
        # constraints within eps (or the margin that restoration keeps) of the border are active
        active = g_val >= -self.margins.clamp_min(self.params.eps)
        # Leave the init phase once nothing is violated, or when its budget is spent.
        out_of_budget = self.step_count >= self.params.init_steps
        self.feasible = self.feasible | ~(g_val > 0).any(-1) | out_of_budget
        scales = gradient_scales(gram, losses, self.params.normalization)
        combos = combos.to(gram.dtype) / scales.unsqueeze(-2)  # columns act on g_i / c_i
        big_gram = combos @ gram @ combos.transpose(-1, -2)  # (K, m + P, m + P)
        tasks = self.feasible
        if self.params.restore:
            # A subproblem that has left its sector (less its margin) steps back in first.
            tasks = tasks & ~(g_val > -self.margins).any(-1)
        tasks = tasks.unsqueeze(-1).expand(-1, m)
        mask = torch.cat([tasks, active], dim=-1)
        w = min_norm_gram(big_gram, mask, check_every=2, validate=False)
        alpha = (w.unsqueeze(-1) * combos).sum(-2)  # (K, m): coefficients of the raw g_i
        if not self.params.ascent:
            # Steps on the constraints alone only descend: lower the losses that must shrink.
            alpha = torch.where(tasks, alpha, alpha.clamp_min(0))
        return to_task_scale(alpha)

    def _combos(self, losses: Tensor, g_val: Tensor) -> Tensor:
        """``(K, m + P, m)``: each candidate gradient as a combination of the task gradients."""
        if self.params.constraint_grad == "paper":
            return self.combos
        direction = _unit(losses)
        g = torch.nan_to_num(g_val, neginf=0.0).unsqueeze(-1)
        dirs = self.constraint_dirs.to(losses.dtype) - g * direction.unsqueeze(-2)
        return torch.cat([self.combos[:, : self.n_tasks].to(losses.dtype), dirs], dim=1)

    @property
    def in_init_phase(self) -> Tensor:
        """``(K,)`` bool: which subproblems are still looking for a feasible start."""
        return ~self.feasible

    def to(self, device: torch.device | str) -> ParetoMTL:
        super().to(device)
        self.constraint_dirs = self.constraint_dirs.to(device)
        self.constraint_valid = self.constraint_valid.to(device)
        self.margins = self.margins.to(device)
        self.combos = self.combos.to(device)
        return self


def _unit(losses: Tensor) -> Tensor:
    """``L / ||L||`` per subproblem: the direction of the loss vector."""
    return losses / torch.linalg.vector_norm(losses, dim=-1, keepdim=True).clamp_min(1e-12)
