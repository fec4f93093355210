"""MT2O: scalar subproblems solved together by multi-task gradient descent with parameter transfer.

Bai, Gupta & Ong, "Multi-Task Learning with Multi-Task Optimization", 2024 (arXiv 2403.16162),
built on their multi-task gradient descent (MGD; Bai, Ong, He & Gupta, Memetic Computing 12,
2020). What the paper states, and this module does:

- **decomposition**: the multi-objective problem becomes K unconstrained scalar subproblems
  ``f_k = sum_i w_ki L_i``, one per weight vector (here the weights of the preference directions,
  :func:`~pmtl_core.preferences.to_weights`, so that subproblem ``k`` aims at ``u_k``'s ray);
- **multi-task gradient descent with parameter transfer**: the K models are optimised together
  and, at every iteration, each model takes its own subproblem's gradient step from a blend of
  its own parameters and those of related subproblems: ``θ_k ← sum_j M_kj θ_j - lr · d_k`` with
  ``d_k`` the optimiser's step for ``∇f_k(θ_k)`` (MGD's "reformative gradient descent
  iteration");
- **one initialisation**: all K models start from the same parameters (the engine honours
  ``shared_init``); blending models of different origins would average unrelated networks;
- **optimiser state consistent with the transfer**: the optimiser's per-parameter state
  (momentum, Adam moments) is blended with the same ``M`` as the parameters.

What could not be read. The method section of arXiv 2403.16162 (its transfer coefficients and
their schedule) was not available through this project's sources, only the abstract and a
summary (``../shared/papers``). The rule below is this project's reading, chosen to satisfy
what the abstract and MGD's convergence argument require (row-stochastic transfer between
related subproblems that vanishes over time):

    ``M = (1 - γ_t) I + γ_t T``, ``T_kj = 1/|N(k)|`` for the ``neighbours`` subproblems ``j``
    whose weight vectors are nearest to ``w_k`` (0 otherwise);
    ``γ_t = transfer · (1 - p / transfer_until)`` at training progress ``p < transfer_until``,
    then 0, applied every ``transfer_every`` iterations.

``transfer = 0`` is the same K subproblems without transfer (linear scalarisation from one
shared start): the baseline that ``bench/reproduce.py`` compares MT2O with. Measured there
(MultiMNIST, the Pareto MTL paper's protocol at 10 epochs, 3 seeds; ``docs/results.md``): the
transfer did not make the hypervolume converge faster (test HV 1.60 ± 0.04 with it, 1.63 ± 0.06
without).
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
    """Hyperparameters of MT2O's transfer (this project's reading; see the module docstring)."""

    transfer: float = Field(
        0.1, ge=0.0, le=1.0, description="initial transfer coefficient γ (0: no transfer)"
    )
    neighbours: int = Field(
        2, ge=1, description="subproblems (nearest weight vectors) each one takes parameters from"
    )
    transfer_every: int = Field(1, ge=1, description="iterations between two transfers")
    transfer_until: float = Field(
        0.5, gt=0.0, le=1.0, description="fraction of training after which transfer stops"
    )


class MT2O(Method):
    """Weighted-sum subproblems from one start, with parameter transfer between neighbours."""

    name = "mt2o"
    summary = (
        "MT2O: weighted-sum subproblems trained together from one initialisation, each step "
        "taken from a blend of neighbouring subproblems' parameters (transfer rule: our reading "
        "of the paper)."
    )
    Params = MT2OParams
    needs_gram = False
    couples_subproblems = True
    shared_init = True

    def __init__(self, preferences: Tensor, params=None, *, all_preferences=None) -> None:
        super().__init__(preferences, params, all_preferences=all_preferences)
        self.weights = to_weights(self.preferences)
        self.transfer_targets = self._neighbour_matrix()

    def _neighbour_matrix(self) -> Tensor:
        """``T (K, K)``: equal weights on each subproblem's nearest weight vectors."""
        w = self.weights.double()
        k = w.shape[0]
        eye = torch.eye(k, dtype=w.dtype, device=w.device)
        if k == 1:
            return eye
        dist = torch.cdist(w, w).masked_fill(eye.bool(), float("inf"))  # exclude self
        n = min(self.params.neighbours, k - 1)
        nearest = dist.topk(n, dim=-1, largest=False).indices
        return torch.zeros_like(dist).scatter_(-1, nearest, 1.0 / n)

    def forward(self, losses: Tensor, gram: Tensor | None) -> Tensor:
        return to_task_scale(self.weights.to(losses.dtype)).expand_as(losses)

    def coefficient(self, progress: float) -> float:
        """The transfer coefficient ``γ`` at training progress ``progress`` in [0, 1]."""
        until = self.params.transfer_until
        if progress >= until:
            return 0.0
        return self.params.transfer * (1.0 - progress / until)

    def mixing(self, step: int, total_steps: int) -> Tensor | None:
        """``M (K, K)`` for iteration ``step`` of ``total_steps``, or None (no transfer)."""
        if self.n_subproblems == 1 or (step + 1) % self.params.transfer_every:
            return None
        gamma = self.coefficient(step / max(total_steps, 1))
        if gamma <= 0.0:
            return None
        eye = torch.eye(self.n_subproblems, dtype=torch.float64, device=self.preferences.device)
        return ((1 - gamma) * eye + gamma * self.transfer_targets).float()

    def to(self, device: torch.device | str) -> MT2O:
        super().to(device)
        self.weights = self.weights.to(device)
        self.transfer_targets = self.transfer_targets.to(device)
        return self
