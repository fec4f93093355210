"""GradNorm: learned task weights that balance the tasks' gradient magnitudes.

Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
Balancing in Deep Multitask Networks", ICML 2018. Each model keeps weights ``w (m)`` (start at 1,
renormalised to sum to ``m``). With ``G_i = w_i ||∇L_i||`` (gradient norms from the Gram
diagonal, w.r.t. the shared parameters or the shared representation), the relative inverse
training rate ``r_i = (L_i/L_i(0)) / mean_j (L_j/L_j(0))`` and the target ``mean(G) r_i^asymmetry``
held constant, ``w`` takes a gradient step on ``sum_i |G_i - target_i|``. Preferences are ignored.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from pmtl_core.methods._base import GradTarget, Method, MethodParams

__all__ = ["GradNorm", "GradNormParams"]


class GradNormParams(MethodParams):
    """Hyperparameters of GradNorm."""

    asymmetry: float = Field(1.5, ge=0.0, description="GradNorm's alpha: strength of rebalancing")
    lr: float = Field(0.025, gt=0.0, description="learning rate of the task weights")
    grad_wrt: GradTarget = Field(
        "representation", description="gradient norms w.r.t. shared parameters or representation"
    )


class GradNorm(Method):
    """GradNorm adaptive loss weights, one set per model."""

    name = "gradnorm"
    summary = "Learned loss weights that equalise the tasks' gradient norms and training rates."
    Params = GradNormParams
    uses_preferences = False
    _state: ClassVar[tuple[str, ...]] = ("task_weights", "initial_losses", "started")

    def __init__(self, preferences: Tensor, params=None, *, all_preferences=None) -> None:
        super().__init__(preferences, params, all_preferences=all_preferences)
        k, m = self.n_subproblems, self.n_tasks
        dev = self.preferences.device
        self.task_weights = torch.ones(k, m, device=dev)
        self.initial_losses = torch.ones(k, m, device=dev)
        self.started = torch.zeros((), dtype=torch.bool, device=dev)

    @property
    def grad_target(self) -> GradTarget:
        return self.params.grad_wrt

    def forward(self, losses: Tensor, gram: Tensor | None) -> Tensor:
        assert gram is not None
        m = self.n_tasks
        losses = losses.to(self.task_weights.dtype)
        self.initial_losses = torch.where(
            self.started, self.initial_losses, losses.clamp_min(1e-12)
        )
        self.started = torch.ones_like(self.started)
        alpha = self.task_weights.clone()
        norms = torch.diagonal(gram, dim1=-2, dim2=-1).clamp_min(0).sqrt().to(alpha.dtype)
        g = alpha * norms
        rate = losses / self.initial_losses
        rel = rate / rate.mean(-1, keepdim=True).clamp_min(1e-12)
        target = g.mean(-1, keepdim=True) * rel.pow(self.params.asymmetry)
        grad = torch.sign(g - target) * norms
        w = (self.task_weights - self.params.lr * grad).clamp_min(1e-6)
        self.task_weights = w * (m / w.sum(-1, keepdim=True))
        return alpha
