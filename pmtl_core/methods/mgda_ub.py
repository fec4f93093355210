"""MGDA-UB: MGDA on gradients with respect to the shared representation.

Sener & Koltun (2018), section 3.3: for an encoder ``z = f(x; theta_sh)`` followed by task heads,
``||sum_i w_i grad_theta L_i|| <= ||dz/dtheta|| ||sum_i w_i grad_z L_i||``, so minimising the
upper bound needs only the gradients of the losses with respect to ``z`` (one backward through
the heads per task, none through the encoder). The engine computes those Gram matrices when a
method's ``grad_target`` is ``"representation"``; memory no longer grows with the encoder.
"""

from __future__ import annotations

from pmtl_core.methods._base import GradTarget
from pmtl_core.methods.mgda import MGDA, MGDAParams

__all__ = ["MGDAUB", "MGDAUBParams"]


class MGDAUBParams(MGDAParams):
    """Hyperparameters of MGDA-UB (those of MGDA)."""


class MGDAUB(MGDA):
    """MGDA with representation gradients (the upper-bound variant)."""

    name = "mgda_ub"
    summary = "MGDA on gradients w.r.t. the shared representation: one encoder backward per step."
    Params = MGDAUBParams

    @property
    def grad_target(self) -> GradTarget:
        return "representation"
