"""MGDA: the min-norm common descent direction of the task gradients.

Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018. Each
subproblem steps along ``-d`` with ``d = sum_i w_i g_i / c_i`` the minimum-norm point of the convex
hull of the (optionally normalised) task gradients; when ``d = 0`` the point is Pareto
stationary. Preferences are ignored: K preference vectors give K independent runs from different
initialisations, which is why MGDA's solutions crowd together rather than spread.
"""

from __future__ import annotations

from torch import Tensor

from pmtl_core.methods._base import Method, MethodParams
from pmtl_core.methods._common import (
    Normalization,
    gradient_scales,
    normalise_gram,
    to_task_scale,
)
from pmtl_core.solvers import min_norm_gram

__all__ = ["MGDA", "MGDAParams"]


class MGDAParams(MethodParams):
    """Hyperparameters of MGDA."""

    normalization: Normalization = "none"


class MGDA(Method):
    """Multiple-gradient descent (Désidéri 2012; Sener & Koltun 2018), batched over K."""

    name = "mgda"
    summary = "Min-norm common descent direction of all task gradients; one Pareto point per run."
    Params = MGDAParams
    uses_preferences = False

    def forward(self, losses: Tensor, gram: Tensor | None) -> Tensor:
        assert gram is not None
        scales = gradient_scales(gram, losses, self.params.normalization)
        w = min_norm_gram(normalise_gram(gram, scales), check_every=2, validate=False)
        return to_task_scale(w / scales)
