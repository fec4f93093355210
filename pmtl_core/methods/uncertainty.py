"""Uncertainty weighting: task weights from learned homoscedastic log-variances.

Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics", CVPR 2018. Each model minimises ``sum_i exp(-s_i) L_i + s_i`` over its
parameters and its log-variances ``s (m)``: the model's step uses weights ``exp(-s_i)`` and ``s``
takes an SGD step along ``1 - exp(-s_i) L_i`` (the classification form of the paper's loss), so a
task whose loss stays high is down-weighted. Preferences are ignored.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from pmtl_core.methods._base import Method, MethodParams

__all__ = ["Uncertainty", "UncertaintyParams"]


class UncertaintyParams(MethodParams):
    """Hyperparameters of uncertainty weighting."""

    lr: float = Field(0.01, gt=0.0, description="learning rate of the log-variances")
    init_log_var: float = Field(0.0, description="initial log-variance of every task")


class Uncertainty(Method):
    """Homoscedastic-uncertainty loss weighting (Kendall et al. 2018), one set per model."""

    name = "uncertainty"
    summary = "Loss weights exp(-s) from learned task log-variances s."
    Params = UncertaintyParams
    needs_gram = False
    uses_preferences = False
    _state: ClassVar[tuple[str, ...]] = ("log_vars",)

    def __init__(self, preferences: Tensor, params=None, *, all_preferences=None) -> None:
        super().__init__(preferences, params, all_preferences=all_preferences)
        self.log_vars = torch.full(
            (self.n_subproblems, self.n_tasks),
            float(self.params.init_log_var),
            device=self.preferences.device,
        )

    def forward(self, losses: Tensor, gram: Tensor | None) -> Tensor:
        alpha = torch.exp(-self.log_vars)
        grad = 1 - alpha * losses.to(alpha.dtype)
        self.log_vars = self.log_vars - self.params.lr * grad
        return alpha.to(losses.dtype)
