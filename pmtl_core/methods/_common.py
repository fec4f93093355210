"""Helpers shared by several methods: gradient normalisation and the weight scale."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["Normalization", "gradient_scales", "normalise_gram", "to_task_scale"]

#: How task gradients are scaled before the min-norm problem (Sener & Koltun, 2018, sec. 3):
#: ``none``; ``l2`` divides by the gradient norm; ``loss`` by the loss value; ``loss+`` by both.
Normalization = Literal["none", "l2", "loss", "loss+"]

_TINY = 1e-12


def gradient_scales(gram: Tensor, losses: Tensor, mode: Normalization) -> Tensor:
    """The per-task divisor ``c (K, m)`` of each gradient under ``mode``."""
    norms = torch.diagonal(gram, dim1=-2, dim2=-1).clamp_min(0).sqrt()
    if mode == "none":
        c = torch.ones_like(losses)
    elif mode == "l2":
        c = norms
    elif mode == "loss":
        c = losses.abs()
    elif mode == "loss+":
        c = losses.abs() * norms
    else:
        raise ValueError(f"unknown gradient normalisation {mode!r}; use none, l2, loss or loss+")
    return c.clamp_min(_TINY)


def normalise_gram(gram: Tensor, scales: Tensor) -> Tensor:
    """The Gram matrix of the scaled gradients ``g_i / c_i``."""
    return gram / (scales.unsqueeze(-1) * scales.unsqueeze(-2))


def to_task_scale(alpha: Tensor) -> Tensor:
    """Rescale weights so that ``sum_i |alpha_i| = m`` for every subproblem.

    All direction-finding methods return weights on this scale, the scale of training on the
    summed loss, so that one learning rate serves every method (and Pareto MTL's paper setting,
    lr 1e-3 with ``sum |alpha| = 2`` for two tasks, is reproduced exactly).
    """
    m = alpha.shape[-1]
    total = alpha.abs().sum(-1, keepdim=True)
    return torch.where(total > _TINY, alpha * (m / total.clamp_min(_TINY)), torch.zeros_like(alpha))
