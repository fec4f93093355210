"""``psl``: Pareto-set learning, one preference-conditioned model for the whole front.

Pareto HyperNetworks (Navon, Shamsian, Chechik & Fetaya, ICLR 2021), COSMOS (Ruchte &
Grabocka, 2021) and PSL (Lin, Yang, Zhang & Zhang, NeurIPS 2022) train one model ``h(u)`` that
maps any preference ``u`` to a solution, instead of one model per preference. Every step samples
preferences from the simplex and descends on each one's scalarisation at ``h(u)``.

The scalarisation here is the weighted Chebyshev function with weights ``r_i ∝ 1/u_i`` (an
exact-alignment scalarisation, PSL's Tchebycheff with EPO's ratios):
``g(L | u) = max_i r_i L_i``. With non-negative losses whose ideal point is the origin, its
minimiser on a front is the point where ``r_i L_i`` are all equal, so ``L`` is parallel to ``u``:
the solution for ``u`` lands on ``u``'s ray (as EPO's), whatever the shape of the front. Entries of
``u`` are floored at ``r_min · max(u)`` so that preferences on the simplex's border stay defined.

As a :class:`~pmtl_core.methods.Method` it maps the losses at the sampled preferences to the
(sub)gradient weights of ``g``: ``r_i / sum(r)`` on the task with the largest ``r_i L_i``, zero
on the others. The engine owns the model ``h``: on function problems an MLP from preferences to
solutions (:mod:`pmtl_core.engine.set_loop`); on data sets the problem's own network with the
preference as extra inputs, COSMOS-style (:mod:`pmtl_core.engine.conditioned_loop`), whose
network for one preference folds out as a plain model of the problem.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from pmtl_core.methods._base import Method, MethodParams

__all__ = ["PSL", "PSLParams", "chebyshev_weights"]


class PSLParams(MethodParams):
    """Hyperparameters of Pareto-set learning."""

    hidden: int = Field(
        64,
        ge=4,
        le=4096,
        description="width of the two hidden layers of the set model h(u) "
        "(function problems; on a data set h is the problem's own network)",
    )
    samples: int = Field(
        16,
        ge=1,
        le=4096,
        description="preferences sampled from the simplex at every step (on a data set, the "
        "batch is cut into that many groups, one preference each)",
    )
    r_min: float = Field(
        1e-2,
        gt=0.0,
        lt=1.0,
        description="floor of each preference entry relative to the largest (keeps the "
        "Chebyshev weights finite on the simplex's border)",
    )


def chebyshev_weights(losses: Tensor, preferences: Tensor, r_min: float = 1e-2) -> Tensor:
    """``(n, m)`` (sub)gradient of ``max_i r_i L_i`` w.r.t. ``L`` for losses and preferences
    ``(n, m)``, with ``r ∝ 1 / max(u, r_min · max u)`` normalised to sum 1."""
    u = preferences.to(losses.dtype)
    r = 1.0 / torch.maximum(u, r_min * u.amax(-1, keepdim=True))
    r = r / r.sum(-1, keepdim=True)
    top = (r * losses).argmax(-1, keepdim=True)
    return torch.zeros_like(losses).scatter(-1, top, r.gather(-1, top))


class PSL(Method):
    """Pareto-set learning with an exact-alignment (weighted Chebyshev) scalarisation."""

    name = "psl"
    summary = (
        "Pareto-set learning: one preference-conditioned model for the whole front, trained on "
        "preferences sampled every step; any preference's solution on demand, on its ray."
    )
    Params = PSLParams
    needs_gram = False
    couples_subproblems = True
    warm_startable = False
    learns_pareto_set: ClassVar[bool] = True
    problem_kinds: ClassVar[tuple[str, ...]] = ("function", "dataset")

    def forward(self, losses: Tensor, gram: Tensor | None) -> Tensor:
        return chebyshev_weights(losses, self.preferences, self.params.r_min)

    def scalarisation_weights(self, losses: Tensor, preferences: Tensor) -> Tensor:
        """The weights for losses ``(n, m)`` at freshly sampled ``preferences (n, m)``."""
        return chebyshev_weights(losses, preferences, self.params.r_min)
