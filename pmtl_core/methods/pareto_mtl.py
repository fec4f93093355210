"""Pareto MTL: one constrained subproblem per preference vector, as the paper and its code do it.

Lin, Zhen, Li, Zhang & Kwong, "Pareto Multi-Task Learning", NeurIPS 2019 (Algorithm 1), and the
authors' reference implementation (Xi-L/ParetoMTL, ``multiMNIST/train.py``:
``get_d_paretomtl_init``, ``get_d_paretomtl`` and the training loop), re-derived here.
The preference vectors ``u_1 … u_P`` (unit length) cut loss space into sectors; subproblem ``k``
minimises ``L(θ)`` subject to ``G_j(θ) = (u_j - u_k)^T L(θ)/||L(θ)|| <= 0`` for every ``j != k``.
With ``c_j = u_j - u_k`` and task gradients ``g_i``, the gradient of constraint ``j`` is taken,
as in the paper (eq. 10) and the reference, as ``sum_i c_ji g_i``. Two phases per subproblem:

- **init** (while some ``G_j > 0``, for at most ``init_steps`` iterations; the phase ends for
  good the first time the subproblem is feasible, as the reference's ``break`` does): the
  weights are ``α = sum_j β_j c_j`` over the violated constraints, ``β`` the min-norm point of
  their gradients (one violated constraint: ``β = 1``). Not rescaled: the reference steps along
  this direction at the plain learning rate.
- **main**: the min-norm point over the ``m`` task gradients and the gradients of the active
  constraints (``G_j >= -ε``; ``ε = 0``, the default, is the reference's ``G_j > 0``; see
  below for ``ε > 0``) gives task
  multipliers ``λ`` and constraint multipliers ``β``; ``α_i = λ_i + sum_j β_j c_ji``, rescaled so
  that ``sum_i |α_i| = m`` (the reference's ``n_tasks / sum |weight|``).

The engine descends along ``sum_i α_i g_i``; on data sets each ``g_i`` covers every parameter
task ``i`` reaches, its own head included (``gram_params = "all"``), as in the reference.

``ε > 0`` (the paper's ``I_ε``) is bounded so that it cannot stall a subproblem off the front.
It is capped at half of ``1 - cos`` of the angle between ``u_k`` and its nearest other ray:
``G_j`` at ``u_k``'s own ray is ``u_j^T u_k - 1``, so with a larger ``ε`` both neighbours of a
subproblem sitting on its ray are active at once, their constraint gradients cancel the task
gradients and the min-norm point is zero. And it widens the active set of a subproblem inside
its sector only: one outside (some ``G_j > 0``) takes its violated constraints, whose gradients
can never cancel the task gradients (``sum_j β_j G_j > 0`` while a cancelling combination would
have ``sum_j β_j c_j <= 0``, so ``sum_j β_j G_j <= 0``). With ``ε = 0`` both rules change nothing.

Everything is batched: the candidate gradients of every subproblem are linear combinations of its
``m`` task gradients, so one ``(K, m, m)`` Gram matrix gives all of them (``C G C^T`` with
``C = [I; c_j]``) and one masked, batched min-norm call serves all K subproblems in either phase.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from pmtl_core.methods._base import GradTarget, Method, MethodParams
from pmtl_core.methods._common import Normalization, gradient_scales, to_task_scale
from pmtl_core.solvers import min_norm_gram

__all__ = ["ParetoMTL", "ParetoMTLParams", "reference_init_budget"]


def reference_init_budget(steps_per_epoch: int, total_steps: int, *, dataset: bool) -> int:
    """The reference implementation's init budget: two epochs on data sets (``multiMNIST``),
    a fifth of all iterations on function problems (``synthetic_example``)."""
    return 2 * steps_per_epoch if dataset else total_steps // 5


class ParetoMTLParams(MethodParams):
    """Hyperparameters of Pareto MTL (defaults: the paper's and its reference code's)."""

    eps: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="constraints with G_j >= -eps count as active in the main phase (0: only "
        "violated ones, as in the reference); capped at half the G_j of the nearest other ray "
        "at the subproblem's own ray, so that no subproblem stalls off the front",
    )
    init_steps: int | None = Field(
        None,
        ge=0,
        description="iteration budget of the init phase; empty: the reference's budget (two "
        "epochs on data sets, a fifth of the steps on function problems)",
    )
    normalization: Normalization = Field(
        "none", description="task-gradient normalisation before the min-norm problem"
    )
    grad_wrt: GradTarget = Field(
        "shared",
        description="take task gradients w.r.t. all parameters (exact, as the paper) or the "
        "shared representation (MGDA-UB style: cheaper, about one forward and backward per step)",
    )


class ParetoMTL(Method):
    """Pareto MTL (Lin et al. 2019), K subproblems at once."""

    name = "pareto_mtl"
    summary = (
        "Pareto MTL as in the paper and its reference code: one constrained subproblem per "
        "preference sector, a well-spread Pareto front."
    )
    Params = ParetoMTLParams
    gram_params = "all"
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
        self.eps = self._capped_eps()
        self.init_budget: int | None = self.params.init_steps

    def _capped_eps(self) -> Tensor:
        """``(K,)``: ``eps`` capped at half of ``1 - u_j^T u_k`` for the nearest other ray."""
        cos = torch.einsum("km,pm->kp", self.preferences.double(), self.all_preferences.double())
        gap = torch.where(self.constraint_valid, 1 - cos, torch.full_like(cos, float("inf")))
        half_gap = gap.amin(-1) / 2
        cap = torch.where(torch.isfinite(half_gap), half_gap, torch.zeros_like(half_gap))
        return cap.clamp_max(self.params.eps).to(self.preferences.dtype)

    def bind(self, *, steps_per_epoch: int, total_steps: int, dataset: bool) -> None:
        """Take the reference's init budget for this run unless ``init_steps`` fixes one."""
        if self.params.init_steps is None:
            self.init_budget = reference_init_budget(steps_per_epoch, total_steps, dataset=dataset)

    def constraints(self, losses: Tensor) -> Tensor:
        """``G (K, P)``: the constraint values of each subproblem (invalid entries are -inf)."""
        direction = _unit(losses)
        g = torch.einsum("kpm,km->kp", self.constraint_dirs.to(losses.dtype), direction)
        return g.masked_fill(~self.constraint_valid, float("-inf"))

    def _in_init(self, violated: Tensor) -> Tensor:
        """``(K,)``: subproblems in the init phase this step; updates the sticky exit flag."""
        self.feasible = self.feasible | ~violated.any(-1)
        if self.init_budget is not None:  # a tensor comparison: no host synchronisation
            self.feasible = self.feasible | (self.step_count >= self.init_budget)
        return ~self.feasible

    def _scaled_gram(self, losses: Tensor, gram: Tensor, combos: Tensor) -> tuple[Tensor, Tensor]:
        """Candidate combinations acting on the (normalised) task gradients and their Gram."""
        scales = gradient_scales(gram, losses, self.params.normalization)
        combos = combos.to(gram.dtype) / scales.unsqueeze(-2)  # columns act on g_i / s_i
        return combos, combos @ gram @ combos.transpose(-1, -2)

    def forward(self, losses: Tensor, gram: Tensor | None) -> Tensor:
        assert gram is not None
        m = self.n_tasks
        g_val = self.constraints(losses)
        violated = g_val > 0
        init = self._in_init(violated)
        combos, big_gram = self._scaled_gram(losses, gram, self.combos)
        # eps widens the active set of a subproblem inside its sector only; one outside steps
        # on its violated constraints (which can never cancel the task gradients)
        near = (g_val + self.eps.to(g_val.dtype).unsqueeze(-1)) > 0
        outside = violated.any(-1, keepdim=True)
        constraint_mask = torch.where(init.unsqueeze(-1) | outside, violated, near)
        task_mask = (~init).unsqueeze(-1).expand(-1, m)
        w = min_norm_gram(big_gram, torch.cat([task_mask, constraint_mask], -1), validate=False)
        alpha = (w.unsqueeze(-1) * combos).sum(-2)  # (K, m): coefficients of the raw g_i
        return torch.where(init.unsqueeze(-1), alpha, to_task_scale(alpha))

    @property
    def in_init_phase(self) -> Tensor:
        """``(K,)`` bool: which subproblems are still looking for a feasible start."""
        return ~self.feasible

    def to(self, device: torch.device | str) -> ParetoMTL:
        super().to(device)
        self.constraint_dirs = self.constraint_dirs.to(device)
        self.constraint_valid = self.constraint_valid.to(device)
        self.combos = self.combos.to(device)
        self.eps = self.eps.to(device)
        return self


def _unit(losses: Tensor) -> Tensor:
    """``L / ||L||`` per subproblem: the direction of the loss vector."""
    return losses / torch.linalg.vector_norm(losses, dim=-1, keepdim=True).clamp_min(1e-12)
