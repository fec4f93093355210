"""Single-task training: each model learns only the task its preference vector favours most.

The favoured task of ``u`` is the largest entry of ``to_weights(u)`` (so ``u = (1, 0)`` trains
task 2, ``u = (0, 1)`` task 1); ties go to the lower task index. Preference vectors along the
axes (``preferences.uniform(2, 2)``) give the usual one model per task; the other tasks' heads
are not trained.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pmtl_core.methods._base import Method, MethodParams
from pmtl_core.preferences import to_weights

__all__ = ["SingleTask", "SingleTaskParams"]


class SingleTaskParams(MethodParams):
    """Single-task training has no hyperparameters."""


class SingleTask(Method):
    """One task per model; weights are ``m`` on the favoured task, 0 elsewhere."""

    name = "single_task"
    summary = "One model per task (the task each preference favours most): the per-task floor."
    Params = SingleTaskParams
    needs_gram = False
    warm_startable = False

    def forward(self, losses: Tensor, gram: Tensor | None) -> Tensor:
        task = to_weights(self.preferences).argmax(-1)
        onehot = torch.nn.functional.one_hot(task, self.n_tasks).to(losses.dtype)
        return (self.n_tasks * onehot).expand_as(losses)
