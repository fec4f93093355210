"""MT2O: scalar subproblems solved together with iterative parameter transfer.

Bai, Gupta & Ong, "Multi-Task Learning with Multi-Task Optimization", 2024 (arXiv 2403.16162),
building on their multi-task gradient descent (MTGD). The multi-objective problem is decomposed
into K unconstrained scalar subproblems ``f_k = sum_i w_ki L_i`` (weights ``w_k`` from the
preference directions by :func:`~pmtl_core.preferences.to_weights`); the K models are trained
together and, besides its own gradient step, each model is pulled toward the models of its
neighbouring subproblems, whose optima are close in parameter space.

Transfer rule (what this module implements). Let ``N(k)`` be the ``neighbours`` subproblems whose
preference vectors make the smallest angle with ``u_k``. Every ``transfer_every`` iterations,
after the optimiser step, all K parameter sets are replaced by ``θ ← M θ`` with the
row-stochastic matrix

    ``M = (1 - γ) I + γ T``,  ``T_kj = 1/|N(k)|`` for ``j ∈ N(k)`` and 0 otherwise.

Schedule: ``γ = transfer · (1 - p / transfer_until)`` for training progress ``p`` (fraction of all
iterations done) below ``transfer_until``, and 0 afterwards: transfer is strong early, when the
models are far from their optima and sharing speeds all of them up, and vanishes before the end
so each subproblem converges to its own optimum. ``γ = 0`` (``transfer = 0``) is plain
linear scalarisation of K independent models.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from pmtl_core.methods._base import Method, MethodParams
from pmtl_core.methods._common import to_task_scale
from pmtl_core.preferences import to_weights

__all__ = ["MT2O", "MT2OParams"]


class MT2OParams(MethodParams):
    """Hyperparameters of MT2O's transfer."""

    transfer: float = Field(0.1, ge=0.0, le=1.0, description="initial transfer coefficient γ")
    neighbours: int = Field(2, ge=1, description="neighbouring subproblems each one learns from")
    transfer_every: int = Field(1, ge=1, description="iterations between two transfers")
    transfer_until: float = Field(
        0.5, gt=0.0, le=1.0, description="fraction of training after which transfer stops"
    )


class MT2O(Method):
    """Linear-scalarisation subproblems with neighbour parameter transfer (MT2O)."""

    name = "mt2o"
    summary = "Scalar subproblems trained together, sharing parameters with their neighbours."
    Params = MT2OParams
    needs_gram = False
    couples_subproblems = True

    def __init__(self, preferences: Tensor, params=None, *, all_preferences=None) -> None:
        super().__init__(preferences, params, all_preferences=all_preferences)
        self.transfer_targets = self._neighbour_matrix()

    def _neighbour_matrix(self) -> Tensor:
        """``T (K, K)``: equal weights on each subproblem's nearest preference directions."""
        u = self.preferences.double()
        k = u.shape[0]
        eye = torch.eye(k, dtype=u.dtype, device=u.device)
        if k == 1:
            return eye
        cos = (u @ u.T).clamp(-1, 1) - 2 * eye  # exclude self
        n = min(self.params.neighbours, k - 1)
        nearest = cos.topk(n, dim=-1).indices
        return torch.zeros_like(cos).scatter_(-1, nearest, 1.0 / n)

    def forward(self, losses: Tensor, gram: Tensor | None) -> Tensor:
        return to_task_scale(to_weights(self.preferences).to(losses.dtype)).expand_as(losses)

    def coefficient(self, progress: float) -> float:
        """The transfer coefficient ``γ`` at training progress ``progress`` in [0, 1]."""
        until = self.params.transfer_until
        if progress >= until:
            return 0.0
        return self.params.transfer * (1.0 - progress / until)

    def mixing(self, step: int, total_steps: int) -> Tensor | None:
        """``M (K, K)`` to apply after iteration ``step`` of ``total_steps``, or None."""
        if self.n_subproblems == 1 or (step + 1) % self.params.transfer_every:
            return None
        gamma = self.coefficient(step / max(total_steps, 1))
        if gamma <= 0.0:
            return None
        eye = torch.eye(self.n_subproblems, dtype=torch.float64, device=self.preferences.device)
        return ((1 - gamma) * eye + gamma * self.transfer_targets).float()

    def to(self, device: torch.device | str) -> MT2O:
        super().to(device)
        self.transfer_targets = self.transfer_targets.to(device)
        return self
