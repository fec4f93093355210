"""Linear scalarisation: minimise ``sum_i w_i L_i`` with fixed weights, one model per weight.

Over a grid of preference vectors this is the classic grid-search baseline. Weights come from
the preference direction ``u`` by :func:`pmtl_core.preferences.to_weights` (``w_i ∝ 1/u_i``,
the weights whose optimum lies on ``u``'s ray when the front is symmetric), so ``u = (1, 0)``
trains on task 2 alone. On a concave front every weighted sum is minimised at one of the two
ends, which is why this baseline leaves the middle of such fronts empty.
"""

from __future__ import annotations

from torch import Tensor

from pmtl_core.methods._base import Method, MethodParams
from pmtl_core.methods._common import to_task_scale
from pmtl_core.preferences import to_weights

__all__ = ["Linear", "LinearParams"]


class LinearParams(MethodParams):
    """Linear scalarisation has no hyperparameters."""


class Linear(Method):
    """Weighted sum of the task losses with weights fixed by the preference vector."""

    name = "linear"
    summary = "Weighted sum of losses over a grid of weights: the grid-search baseline."
    Params = LinearParams
    needs_gram = False

    def forward(self, losses: Tensor, gram: Tensor | None) -> Tensor:
        return to_task_scale(to_weights(self.preferences).to(losses.dtype)).expand_as(losses)
