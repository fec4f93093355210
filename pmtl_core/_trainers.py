"""The two inner loops of the engine: stacked models on a data set, and points of a function.

Both expose the same small interface to :func:`pmtl_core.training.train`: ``train_epoch``,
``evaluate``, ``end_epoch`` (learning-rate schedule), ``state_dict``/``load_state_dict``,
``load_model`` (warm start), ``model_config`` and ``solutions``. Neither synchronises with the
host inside an epoch: losses, metrics and the set of live subproblems stay on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from pmtl_core.config import EngineConfig
from pmtl_core.methods import Method
from pmtl_core.stacked import StackedModels

__all__ = ["DatasetTrainer", "FunctionTrainer", "Trainer"]

Progress = Callable[[int, int], None]


class Trainer(Protocol):
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
    if cfg.lr_step > 0:
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _epoch: 1.0)


def _sanitise(losses: Tensor, gram: Tensor | None, alive: Tensor) -> tuple[Tensor, Tensor | None]:
    """Replace the inputs of dead subproblems by harmless finite values for the method."""
    safe_losses = torch.where(alive.unsqueeze(-1), losses, torch.ones_like(losses))
    if gram is None:
        return safe_losses, None
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device).expand_as(gram)
    return safe_losses, torch.where(alive[:, None, None], gram, eye)


class _Base:
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


class DatasetTrainer(_Base):
    """K stacked models trained on a multi-task data set held on the device."""

    kind = "dataset"

    def __init__(
        self, problem: Any, method: Method, cfg: EngineConfig, device: torch.device
    ) -> None:
        self.problem = problem
        self.k, self.m = method.n_subproblems, method.n_tasks
        self.data = problem.load(device)
        models = [problem.build_model() for _ in range(self.k)]
        self.stack = StackedModels(models, device)
        super().__init__(method, cfg, list(self.stack.params.values()))
        n = self.data.train.inputs.shape[0]
        if n == 0:
            raise ValueError(f"problem {problem.name!r} has an empty training set")
        self.samples_per_epoch = n
        self.batches_per_epoch = -(-n // cfg.batch_size)
        self.total_steps = cfg.epochs * self.batches_per_epoch
        self.metric_names = tuple(getattr(problem, "metric_names", ()))

    def _forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        z = self.stack.encode(self.problem.transform(x))
        outs = self.stack.heads(z)
        losses = torch.func.vmap(lambda o: self.problem.task_losses(o, y))(outs)
        return losses, z, outs

    def _metric_sums(self, outs: list[Tensor], y: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            sums = torch.func.vmap(lambda o: self.problem.task_metrics(o, y))(outs)
        return {f"metric:{name}": value.float() for name, value in sums.items()}

    def train_epoch(
        self, epoch: int, gen: torch.Generator, alive: Tensor, progress: Progress
    ) -> dict[str, Tensor]:
        data, cfg, method = self.data.train, self.cfg, self.method
        n = data.inputs.shape[0]
        perm = torch.randperm(n, generator=gen).to(data.inputs.device)
        totals: dict[str, Tensor] = {}
        for b in range(self.batches_per_epoch):
            progress(b, self.batches_per_epoch)
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x, y = data.inputs[idx], data.targets[idx]
            self.optimizer.zero_grad(set_to_none=True)
            losses, z, outs = self._forward(x, y)
            alive &= torch.isfinite(losses).all(-1)
            detached = losses.detach()
            if method.needs_gram:
                if method.grad_target == "representation":
                    gram = self.stack.task_grams_representation(losses, z)
                    safe_l, safe_g = _sanitise(detached, gram.detach(), alive)
                    alpha = method(safe_l, safe_g) * alive.unsqueeze(-1)
                    (alpha.detach() * torch.nan_to_num(losses)).sum().backward()
                    self.stack.mask_grads(alive)
                else:
                    gram, grads = self.stack.task_grams_exact(losses)
                    safe_l, safe_g = _sanitise(detached, gram, alive)
                    alpha = method(safe_l, safe_g) * alive.unsqueeze(-1)
                    self.stack.set_combined_grads(grads, alpha, alive)
            else:
                safe_l, _ = _sanitise(detached, None, alive)
                alpha = method(safe_l, None) * alive.unsqueeze(-1)
                (alpha.detach() * torch.nan_to_num(losses)).sum().backward()
                self.stack.mask_grads(alive)
            self.optimizer.step()
            mixing = method.mixing(self.global_step, self.total_steps)
            if mixing is not None:
                self.stack.mix(mixing)
            self.global_step += 1
            batch = float(idx.shape[0])
            _accumulate(totals, "losses", torch.nan_to_num(detached) * batch)
            for key, value in self._metric_sums(outs, y).items():
                _accumulate(totals, key, value)
        return {key: value / n for key, value in totals.items()}

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, Tensor] | None:
        data = getattr(self.data, split, None)
        if data is None or data.inputs.shape[0] == 0:
            return None
        n = data.inputs.shape[0]
        step = self.cfg.eval_batch_size
        totals: dict[str, Tensor] = {}
        for start in range(0, n, step):
            x, y = data.inputs[start : start + step], data.targets[start : start + step]
            losses, _, outs = self._forward(x, y)
            _accumulate(totals, "losses", losses * float(x.shape[0]))
            for key, value in self._metric_sums(outs, y).items():
                _accumulate(totals, key, value)
        return {key: value / n for key, value in totals.items()}

    def state_dict(self) -> dict[str, Any]:
        return {**self.stack.state_dict(), **self._base_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stack.load_state_dict(state)
        self._load_base(state)

    def load_model(self, index: int, state: dict[str, Tensor]) -> None:
        self.stack.load_model(index, state)

    def model_config(self) -> dict[str, Any]:
        return dict(self.problem.model_config())

    def solutions(self) -> dict[str, Tensor]:
        return self.stack.state_dict()["params"]


class FunctionTrainer(_Base):
    """K points of a differentiable function, one per preference vector (``x (K, d)``)."""

    kind = "function"

    def __init__(
        self, problem: Any, method: Method, cfg: EngineConfig, device: torch.device
    ) -> None:
        self.problem = problem
        gen = torch.Generator().manual_seed(cfg.seed)
        self.x = problem.project(problem.sample(method.n_subproblems, gen, device))
        self.x.requires_grad_(True)
        super().__init__(method, cfg, [self.x])
        self.samples_per_epoch = cfg.steps_per_epoch * method.n_subproblems
        self.total_steps = cfg.epochs * cfg.steps_per_epoch

    def train_epoch(
        self, epoch: int, gen: torch.Generator, alive: Tensor, progress: Progress
    ) -> dict[str, Tensor]:
        method = self.method
        for s in range(self.cfg.steps_per_epoch):
            progress(s, self.cfg.steps_per_epoch)
            values, jac = self.problem.value_and_jacobian(self.x.detach())
            alive &= torch.isfinite(values).all(-1) & torch.isfinite(jac).flatten(1).all(-1)
            gram = jac @ jac.transpose(-1, -2) if method.needs_gram else None
            safe_l, safe_g = _sanitise(values, gram, alive)
            alpha = method(safe_l, safe_g) * alive.unsqueeze(-1)
            direction = torch.einsum("km,kmd->kd", alpha.to(jac.dtype), torch.nan_to_num(jac))
            self.optimizer.zero_grad(set_to_none=True)
            self.x.grad = torch.where(alive.unsqueeze(-1), direction, torch.zeros_like(direction))
            self.optimizer.step()
            with torch.no_grad():
                self.x.copy_(self.problem.project(self.x))
                mixing = method.mixing(self.global_step, self.total_steps)
                if mixing is not None:
                    self.x.copy_(self.problem.project(mixing.to(self.x) @ self.x))
            self.global_step += 1
        with torch.no_grad():
            values = self.problem.evaluate(self.x.detach())
        alive &= torch.isfinite(values).all(-1)
        return {"losses": values}

    def evaluate(self, split: str) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x.detach().cpu(), **self._base_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["x"].shape != self.x.shape:
            raise ValueError(
                f"checkpoint holds points of shape {tuple(state['x'].shape)}, "
                f"expected {tuple(self.x.shape)}"
            )
        with torch.no_grad():
            self.x.copy_(state["x"])
        self._load_base(state)

    def load_model(self, index: int, state: dict[str, Tensor]) -> None:
        with torch.no_grad():
            self.x[index].copy_(state["x"])

    def model_config(self) -> dict[str, Any]:
        return {"architecture": "point", "dim": self.problem.dim}

    def solutions(self) -> Tensor:
        return self.x.detach().cpu()


def _accumulate(totals: dict[str, Tensor], key: str, value: Tensor) -> None:
    totals[key] = value if key not in totals else totals[key] + value
