"""What both inner loops share: the interface the epoch loop drives, optimiser, schedule, transfer.

A loop (:class:`~pmtl_core.engine.dataset_loop.DatasetLoop` for data sets,
:class:`~pmtl_core.engine.function_loop.FunctionLoop` for function problems) exposes
``train_epoch``, ``evaluate``, ``end_epoch`` (learning-rate schedule), ``state_dict`` /
``load_state_dict``, ``load_model`` (warm start), ``model_config`` and ``solutions`` to
:func:`pmtl_core.engine.train`. Neither synchronises with the host inside an epoch: losses,
metrics and the set of live subproblems stay on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from pmtl_core.config import EngineConfig
from pmtl_core.engine.stacked import mix_stacked
from pmtl_core.methods import Method

__all__ = ["Loop", "LoopBase", "Progress", "accumulate", "sanitise"]

Progress = Callable[[int, int], None]


class Loop(Protocol):
    kind: str
    samples_per_epoch: int

    @property
    def lr(self) -> float: ...
    def train_epoch(
        self, epoch: int, gen: torch.Generator, alive: Tensor, progress: Progress
    ) -> dict[str, Tensor]: ...
    def evaluate(self, split: str) -> dict[str, Tensor] | None: ...
    def end_epoch(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def load_model(self, index: int, state: dict[str, Tensor]) -> None: ...
    def model_config(self) -> dict[str, Any]: ...
    def solutions(self) -> Any: ...


def _optimizer(tensors: list[Tensor], cfg: EngineConfig) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay) or Adam over stacked tensors: both act elementwise, so the K
    models are optimised exactly as K separate optimisers would."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(tensors, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(tensors, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _scheduler(
    opt: torch.optim.Optimizer, cfg: EngineConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.lr_milestones:
        return torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=sorted(cfg.lr_milestones), gamma=cfg.lr_gamma
        )
    if cfg.lr_step > 0:
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _epoch: 1.0)


def sanitise(losses: Tensor, gram: Tensor | None, alive: Tensor) -> tuple[Tensor, Tensor | None]:
    """Replace the inputs of dead subproblems by harmless finite values for the method."""
    safe_losses = torch.where(alive.unsqueeze(-1), losses, torch.ones_like(losses))
    if gram is None:
        return safe_losses, None
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device).expand_as(gram)
    return safe_losses, torch.where(alive[:, None, None], gram, eye)


class LoopBase:
    """Optimiser, schedule and the step counter shared by both loops."""

    def __init__(self, method: Method, cfg: EngineConfig, tensors: list[Tensor]) -> None:
        self.method = method
        self.cfg = cfg
        self.optimizer = _optimizer(tensors, cfg)
        self.scheduler = _scheduler(self.optimizer, cfg)
        self.global_step = 0

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def end_epoch(self) -> None:
        self.scheduler.step()

    @torch.no_grad()
    def _transfer(self, tensors: list[Tensor]) -> None:
        """Before the optimiser's step: blend the K parameter sets (and their optimiser state)
        with the method's mixing matrix, if it has one for this iteration (MT2O)."""
        mixing = self.method.mixing(self.global_step, self.total_steps)
        if mixing is None:
            return
        for p in tensors:
            mix_stacked(p, mixing)
            for value in self.optimizer.state.get(p, {}).values():
                if isinstance(value, Tensor) and value.shape == p.shape:
                    mix_stacked(value, mixing)

    def _bind_data_set(self, problem: Any) -> None:
        """Epoch geometry of a data set held in ``self.data`` (samples, batches, steps), told
        to the method; the problem's metric names."""
        n = self.data.train.inputs.shape[0]
        if n == 0:
            raise ValueError(f"problem {problem.name!r} has an empty training set")
        self.samples_per_epoch = n
        self.batches_per_epoch = -(-n // self.cfg.batch_size)
        self.total_steps = self.cfg.epochs * self.batches_per_epoch
        self.method.bind(
            steps_per_epoch=self.batches_per_epoch, total_steps=self.total_steps, dataset=True
        )
        self.metric_names = tuple(getattr(problem, "metric_names", ()))

    def _base_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "global_step": self.global_step,
        }

    def _load_base(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.global_step = int(state["global_step"])


def accumulate(totals: dict[str, Tensor], key: str, value: Tensor) -> None:
    totals[key] = value if key not in totals else totals[key] + value
